"""Where in time does the sound classifier listen? The paper's ESC-10 protocol with open sounds.

    bash benchmarks/datasets/audio/setup.sh              # once: Debian's sounds, espeak-ng, soundfile
    python -m benchmarks.quality.audio                  # >= 100 correctly classified held-out clips (~1 hour, 2 CPUs)
    python -m benchmarks.quality.audio --quick          # 12 clips, N=200: a smoke run of a few minutes
    python -m benchmarks.quality.audio --ablation       # fills, keep_prob, resolution (other clips; own section)
    python -m benchmarks.quality.audio --quick --keep 4 --budget 100 --no-write   # a minute: look at out/audio/report.html

The main table also writes its HTML report (`daxjax.write_audio_report`) to `--report DIR`
(default out/audio; '' for none): per scored clip and method the map over the spectrogram and
the explained against the true interval, the table's numbers, configs and timings.

Clips (`benchmarks/datasets/audio/data.py`): a real sound event (sonic-pi samples, espeak-ng and
pocketsphinx speech) padded at both ends with background noise of random duration at a fixed
SNR; ground truth = the event's interval. Black box: the committed `sound_cnn.onnx` (waveforms in;
`MODEL_CARD.md`). Only clips of the test split (recordings the model never heard) that it
classifies correctly count. Every sampling method gets the same query budget N.

Columns:
  IoU        mean (std) 1-D IoU of the time map thresholded at mean + 1 std (the paper's threshold)
             with the event's frames
  del        deletion AUC over time: frames removed in descending saliency, 2 % per step, removed
             frames hear the clip's noise floor (lower is better); del/p0: divided by the
             unperturbed probability
  s/clip     wall-clock seconds per clip (2 CPU cores; one process, methods in turn)
References: a random map and a centred window as long as the mean event (no explainer).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from benchmarks.results import RESULTS, write_section

SECTION = "## Audio: explaining a sound classifier in time (issue 6)"
ABLATION_SECTION = "## Audio: fills, keep probability and resolution (issue 6 ablation)"
MODEL = Path(__file__).resolve().parents[1] / "datasets" / "audio" / "sound_cnn.onnx"
EVAL_SEED, ABLATION_SEED = 123, 321


def black_box():
    from blackbox_adapters import OnnxWaveformBlackBox

    from benchmarks.datasets.audio.data import SAMPLE_RATE

    return OnnxWaveformBlackBox(MODEL, sample_rate=SAMPLE_RATE, intra_op_threads=2)


def correct_clips(bb, count: int, seed: int, keep: int | None):
    """Test-split clips the black box classifies correctly (the first `keep` of them)."""
    from benchmarks.datasets.audio.data import make_clips

    drawn = make_clips(count, seed=seed, split="test")
    right = np.flatnonzero(bb(drawn.waveforms).argmax(axis=1) == drawn.labels)[:keep]
    return drawn, dataclasses.replace(drawn, waveforms=drawn.waveforms[right], labels=drawn.labels[right],
                                      intervals=drawn.intervals[right], sources=[drawn.sources[i] for i in right])


def audio_config(explainer=None, **changes):
    import daxjax.audio

    from benchmarks.datasets.audio.data import SAMPLE_RATE

    spec = daxjax.audio.SpectrogramConfig(sample_rate=SAMPLE_RATE)
    return daxjax.audio.AudioConfig(explainer=explainer, spectrogram=spec, **changes)


def methods(budget: int) -> dict:
    """Row name -> (method, AudioConfig), every sampling method at the same query budget N."""
    import daxjax

    return {
        "DAX (ours)": ("dax", audio_config(daxjax.DAXConfig(num_samples=budget, keep_prob=0.3))),
        "RISE": ("rise", audio_config(daxjax.RISEConfig(num_samples=budget, cells=16, keep_prob=0.3))),
        "LIME": ("lime", audio_config(daxjax.LIMEConfig(num_samples=budget))),
        "KernelSHAP": ("kernelshap", audio_config(daxjax.KernelSHAPConfig(num_samples=budget))),
        "Occlusion": ("occlusion", audio_config(daxjax.OcclusionConfig(window=8, stride=4))),
    }


def score(bb, clips, maps, truth, config) -> dict:
    """metric name -> [n] of maps [n, frames] for the clips' labels (`daxjax.audio.report.row_metrics`)."""
    from daxjax.audio.report import row_metrics

    from benchmarks.datasets.audio.data import SAMPLE_RATE

    p0 = bb(clips.waveforms)[np.arange(len(clips)), clips.labels]
    return row_metrics(clips.waveforms, SAMPLE_RATE, maps, clips.labels, p0, config, truth=truth, bb=bb)


def row(name: str, s: dict, seconds: float | None = None) -> str:
    secs = "—" if seconds is None else f"{seconds:.2f}"
    iou, deletion = s["1-D IoU"], s["deletion AUC"]
    return (f"| {name} | {iou.mean():.3f} ({iou.std():.3f}) | {deletion.mean():.3f} | "
            f"{s['deletion AUC / p0'].mean():.3f} | {secs} |")


HEADER = ["| method | IoU mean (std) | del | del/p0 | s/clip |", "|---|---|---|---|---|"]


def explain_rows(bb, clips, truth, rows: dict, emit) -> tuple[dict, dict]:
    """(row name -> metrics, row name -> AudioExplanation) of each method on the clips."""
    import daxjax

    from benchmarks.datasets.audio.data import SAMPLE_RATE

    scores, explanations = {}, {}
    for name, (method, config) in rows.items():
        start = time.perf_counter()
        ex = daxjax.explain_audio(bb, clips.waveforms, SAMPLE_RATE, targets=clips.labels, method=method,
                                  config=config, seed=0)
        explanations[name] = ex
        scores[name] = score(bb, clips, ex.maps, truth, config)
        emit(row(name, scores[name], (time.perf_counter() - start) / len(clips)))
    return scores, explanations


def ablation(bb, budget: int, count: int, emit) -> None:
    """One change at a time from each method's setting in the main table, on clips of another seed."""
    import daxjax
    from daxjax.audio.metrics import interval_masks

    from benchmarks.datasets.audio.data import SAMPLE_RATE

    _, clips = correct_clips(bb, count, ABLATION_SEED, None)
    spec = audio_config().spectrogram
    truth = interval_masks(clips.intervals, spec.frame_times(clips.waveforms.shape[1], SAMPLE_RATE))
    emit(f"{len(clips)} correctly classified held-out clips of another seed than the main table "
         f"(`make_clips({count}, seed={ABLATION_SEED}, split=\"test\")`), N={budget}; one change at a time.")
    emit()
    emit("| method | change | IoU mean (std) | del | del/p0 | s/clip |")
    emit("|---|---|---|---|---|---|")
    dax = daxjax.DAXConfig(num_samples=budget, keep_prob=0.3)
    rise = daxjax.RISEConfig(num_samples=budget, cells=16, keep_prob=0.3)
    lime = daxjax.LIMEConfig(num_samples=budget)
    rows = {
        "DAX | as in the table": ("dax", audio_config(dax)),
        "DAX | keep_prob=0.5 (image default)": ("dax", audio_config(dax.replace(keep_prob=0.5))),
        "DAX | restarts=3": ("dax", audio_config(dax.replace(restarts=3))),
        "DAX | segment_frames=8": ("dax", audio_config(dax, segment_frames=8)),
        "DAX | fill=silence": ("dax", audio_config(dax, fill="silence")),
        "DAX | fill=white_noise": ("dax", audio_config(dax, fill="white_noise")),
        "RISE | as in the table": ("rise", audio_config(rise)),
        "RISE | keep_prob=0.5": ("rise", audio_config(dataclasses.replace(rise, keep_prob=0.5))),
        "RISE | fill=silence": ("rise", audio_config(rise, fill="silence")),
        "LIME | as in the table": ("lime", audio_config(lime)),
        "LIME | keep_prob=0.3": ("lime", audio_config(lime.replace(keep_prob=0.3))),
        "LIME | fill=silence": ("lime", audio_config(lime, fill="silence")),
        "LIME | segment_frames=8": ("lime", audio_config(lime, segment_frames=8)),
    }
    for name, (method, config) in rows.items():
        start = time.perf_counter()
        ex = daxjax.explain_audio(bb, clips.waveforms, SAMPLE_RATE, targets=clips.labels, method=method,
                                  config=config, seed=0)
        emit(row(name, score(bb, clips, ex.maps, truth, config), (time.perf_counter() - start) / len(clips)))


def main(argv=None) -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12 clips, N=200: a smoke run")
    parser.add_argument("--clips", type=int, default=None, help="clips to draw (default 130, quick 14)")
    parser.add_argument("--keep", type=int, default=None, help="correct clips to explain (default 100, quick 12)")
    parser.add_argument("--budget", type=int, default=None, help="queries per clip (default 1000, quick 200)")
    parser.add_argument("--ablation", action="store_true",
                        help="run the ablation (fills, keep_prob, resolution) instead, into its own section")
    parser.add_argument("--ablation-clips", type=int, default=30, help="clips drawn for the ablation")
    parser.add_argument("--no-write", action="store_true", help=f"print only, do not update {RESULTS.name}")
    parser.add_argument("--report", default="out/audio", metavar="DIR",
                        help="where the main table's HTML report goes (default out/audio; '' for none)")
    args = parser.parse_args(argv)

    from daxjax.audio.metrics import interval_masks

    from benchmarks.datasets.audio.data import CLASSES, SAMPLE_RATE, available

    reason = available()
    if reason:
        raise SystemExit(reason)
    count = args.clips or (14 if args.quick else 130)
    keep = args.keep or (12 if args.quick else 100)
    budget = args.budget or (200 if args.quick else 1000)
    bb = black_box()
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    if args.ablation:
        section = ABLATION_SECTION
        ablation(bb, budget, args.ablation_clips, emit)
    else:
        section = SECTION
        table(bb, count, keep, budget, emit, args.report)

    if not args.no_write:
        arguments = argv if argv is not None else sys.argv[1:]
        command = "python -m benchmarks.quality.audio" + "".join(" " + a for a in arguments)
        header = [section, "", f"Command: `{command}` — 2 CPU cores (x86-64, shared), {time.strftime('%Y-%m-%d')}.",
                  "Columns: see the docstring of `benchmarks/quality/audio.py`.", ""]
        write_section(section, "\n".join(header + lines) + "\n")


def table(bb, count: int, keep: int, budget: int, emit, report_dir: str = "") -> None:
    """The main table: reference maps and every method on the evaluation clips; and its report in
    report_dir (none for "")."""
    import daxjax
    from daxjax.audio.metrics import interval_masks
    from daxjax.audio.report import reference_maps

    from benchmarks.datasets.audio.data import CLASSES, SAMPLE_RATE

    _, clips = correct_clips(bb, count, EVAL_SEED, keep)
    spec = audio_config().spectrogram
    frame_times = spec.frame_times(clips.waveforms.shape[1], SAMPLE_RATE)
    truth = interval_masks(clips.intervals, frame_times)
    durations = clips.intervals[:, 1] - clips.intervals[:, 0]
    per_class = ", ".join(f"{name} {int((clips.labels == i).sum())}" for i, name in enumerate(CLASSES))
    emit(f"{len(clips)} correctly classified held-out clips (the first of {count} drawn with "
         f"`make_clips({count}, seed={EVAL_SEED}, split=\"test\")`; per class: {per_class}); "
         f"events {durations.min():.2f}-{durations.max():.2f} s (mean {durations.mean():.2f} s, "
         f"{100 * truth.mean():.0f} % of the frames) in 3 s clips; query budget N={budget} per clip; "
         f"black box `{MODEL.name}` on {', '.join(bb.providers)}; front end n_fft {spec.n_fft}, hop "
         f"{spec.hop_length} ({1000 * spec.hop_length / SAMPLE_RATE:g} ms frames), {spec.n_mels} mel bands; "
         "segments of 4 frames; removed audio hears the clip's noise floor; DAX and RISE keep 30 % of "
         "the segments per perturbation, LIME 50 % (`daxjax.audio.explain.AUDIO_DEFAULTS`).")
    emit()
    for line in HEADER:
        emit(line)
    base_config = audio_config()
    references = {name: score(bb, clips, maps, truth, base_config)
                  for name, maps in reference_maps(len(clips), frame_times, float(durations.mean())).items()}
    for name, values in references.items():
        emit(row(name, values))
    scores, explanations = explain_rows(bb, clips, truth, methods(budget), emit)
    if report_dir:
        run = {"clips": f"make_clips({count}, seed={EVAL_SEED}, split='test'), the first {len(clips)} correct",
               "black box": MODEL.name, "query budget N": budget}
        path = daxjax.write_audio_report(report_dir, clips.waveforms, SAMPLE_RATE, explanations,
                                         intervals=clips.intervals, class_names=CLASSES, ids=clips.sources,
                                         title="daxjax audio benchmark", config=run, max_clips=len(clips),
                                         table={**scores, **references})
        print(f"Report: {path.resolve()}", flush=True)


if __name__ == "__main__":
    main()
