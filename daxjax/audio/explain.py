"""`daxjax.explain_audio`: explanations of sound classifiers in time (and frequency).

A clip is shown to the explainers as its log-mel spectrogram image [bands, frames, 1] in [0, 1];
its segments are groups of frames (time, the default) or tiles of bands x frames. Every explainer
runs through the image engine unchanged (its `Method` record, `daxjax.methods.registry`): DAX's mask net and
student look at the spectrogram and its segment-filled perturbations, while each perturbation
the black box answers is a *waveform*: the mask, drawn on the spectrogram grid, is rendered by
`audio.render` (the removed frames or tiles replaced by the clip's fill, `audio.fills`) and
handed to the black box as float32 [n, S] (`querying.RenderedQueries`).

RISE and Occlusion draw their masks on a 1 x frames grid for time segments (their masks vary in
time only) and on the bands x frames grid for tiles.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from blackbox_adapters import as_blackbox, check_probabilities
from daxjax._checks import Replace, check_fields
from daxjax.audio.fills import FILLS, fill_waveforms
from daxjax.audio.inputs import as_waveforms, check_sample_rate
from daxjax.audio.render import TimeFrequencyRender, TimeRender
from daxjax.audio.spectrogram import SpectrogramConfig, log_mel, noise_floor_db, spectrogram_images
from daxjax.methods.dax.config import DAXConfig
from daxjax.methods.base import normalise, run_groups, uninformative, warn_uninformative
from daxjax.inputs import InputError, as_targets, image_digest
from daxjax.device.execution import resolve as resolve_execution
from daxjax.device.querying import RenderedQueries, device_blackbox
from daxjax.methods.rise import RISEConfig
from daxjax.perturbation.segmentation import bucket_size
from daxjax.methods.registry import REGISTRY
from daxjax.perturbation.segments import HostSegments

SegmentKind = Literal["time", "time_frequency"]
#: Where audio departs from the image defaults, and why: a sound classifier that pools over time
#: still hears the event when half of it is kept, so with keep_prob 0.5 most answers are ~1 and
#: DAX's student has nothing to learn; DAX and RISE keep 30 % of the segments (LIME, which did worse
#: with 30 %, keeps its 0.5). RISE's grid has 16 cells along time. The figures: benchmarks/RESULTS.md,
#: "Audio: explaining a sound classifier in time".
AUDIO_DEFAULTS = {
    # The networks of that table (the image default is smaller).
    "dax": lambda: DAXConfig(keep_prob=0.3, resolution=64, student_channels=(16, 16)),
    "rise": lambda: RISEConfig(keep_prob=0.3, cells=16),
}
#: The query-only methods (`Method.query_only`): they take `queries=`, so the black box may hear
#: waveforms. Those that perturb segments take `segmented=`; the others draw masks on the grid.
AUDIO_METHODS = tuple(name for name, method in REGISTRY.items() if method.query_only)


@dataclasses.dataclass(frozen=True)
class AudioConfig(Replace):
    """How a clip is segmented, perturbed and explained; the same for every clip of a call.

    explainer: the method's own config (DAXConfig, RISEConfig, LIMEConfig, KernelSHAPConfig,
      OcclusionConfig); None takes the method's defaults, or the audio ones (`AUDIO_DEFAULTS`:
      DAX and RISE keep 30 % of the segments). Its segmentation and fill fields are
      not used: audio segments and fills are set here. Its grid sizes are in spectrogram cells
      (RISE's `cells` along time; Occlusion's `window` and `stride` in frames).
    spectrogram: the front end (`SpectrogramConfig`).
    segments: "time" (groups of `segment_frames` frames, the default) or "time_frequency"
      (tiles of `segment_bands` bands x `segment_frames` frames; also gives `tf_maps`).
    segment_frames: frames per segment (with the default front end, 4 frames = 64 ms).
    segment_bands: mel bands per tile ("time_frequency" only).
    fill: what removed audio is replaced with: "noise_floor" (noise with the spectrum of the
      clip's quietest frames; default), "white_noise" or "silence" (`audio.fills`).
    floor_quantile: share of a clip's frames, the quietest, that define its noise floor.
    image_margin_db: spectrogram images (what DAX's networks see) map each band's level from
      its noise floor + this margin (0) to `spectrogram.top_db` dB above that (1).
    crossfade: seconds over which a removed stretch fades in and out (time segments), so that
      the cuts themselves add no clicks.
    """

    explainer: Any = None
    spectrogram: SpectrogramConfig = SpectrogramConfig()
    segments: SegmentKind = "time"
    segment_frames: int = 4
    segment_bands: int = 8
    fill: str = "noise_floor"
    floor_quantile: float = 0.1
    image_margin_db: float = 6.0
    crossfade: float = 0.004

    def __post_init__(self):
        check_fields(self, positive=("segment_frames", "segment_bands"))  # and `segments`, a Literal
        if self.fill not in FILLS:
            raise ValueError(f"AudioConfig.fill={self.fill!r} is not one of {FILLS}")
        if not 0.0 < self.floor_quantile <= 1.0:
            raise ValueError(f"AudioConfig.floor_quantile must be in (0, 1], got {self.floor_quantile!r}")
        if not self.crossfade >= 0.0:
            raise ValueError(f"AudioConfig.crossfade must be >= 0 seconds, got {self.crossfade!r}")


@dataclasses.dataclass
class AudioExplanation:
    """What `explain_audio` returns for B clips of S samples (F frames, M mel bands).

    maps: float32 [B, F] in [0, 1], importance of each frame for the target class.
    frame_times: float64 [F], frame centres in seconds (frame t is centred on sample t * hop).
    tf_maps: float32 [B, F, M] in [0, 1] for time x frequency tiles, else None.
    targets: int32 [B]; scores: float32 [B], the black box's probability of the target.
    spectrograms: float32 [B, M, F] log-mel dB of the clips (what the maps are drawn on).
    method, config (the resolved `AudioConfig`), sample_rate, timings (seconds per phase).
    diagnostics: per-clip arrays [B] of how far each map can be trusted (as `Explanation.diagnostics`;
      `informative` False: the black box's answer did not change under perturbation).
    """

    maps: np.ndarray
    frame_times: np.ndarray
    tf_maps: np.ndarray | None
    targets: np.ndarray
    scores: np.ndarray
    spectrograms: np.ndarray
    method: str
    config: AudioConfig
    sample_rate: int
    timings: dict = dataclasses.field(default_factory=dict)
    diagnostics: dict = dataclasses.field(default_factory=dict)


def resolve_config(method: str, config) -> AudioConfig:
    """An `AudioConfig` whose explainer config fits `method` (a bare method config is wrapped)."""
    if method not in AUDIO_METHODS:
        raise InputError(f"unknown or unsupported audio method {method!r}; choose one of {AUDIO_METHODS}")
    expected = REGISTRY[method].config_type
    if config is None:
        config = AudioConfig()
    elif not isinstance(config, AudioConfig):
        config = AudioConfig(explainer=config)
    explainer = AUDIO_DEFAULTS.get(method, expected)() if config.explainer is None else config.explainer
    if not isinstance(explainer, expected):
        raise InputError(f"method={method!r} takes a {expected.__name__}; got {type(explainer).__name__}")
    return config.replace(explainer=explainer)


def segment_map(config: AudioConfig, bands: int, frames: int) -> np.ndarray:
    """Segment ids int32 [bands, frames]: frame groups, or tiles numbered time-major within a band group."""
    time_ids = np.arange(frames) // config.segment_frames
    if config.segments == "time":
        return np.broadcast_to(time_ids[None, :], (bands, frames)).astype(np.int32)
    band_ids = np.arange(bands) // config.segment_bands
    return (band_ids[:, None] * (time_ids[-1] + 1) + time_ids[None, :]).astype(np.int32)


_log_mel = jax.jit(log_mel, static_argnums=(1, 2))
_images = jax.jit(spectrogram_images, static_argnums=2)
_floor = jax.jit(noise_floor_db, static_argnums=1)


def explain_audio(bb, waveforms, sample_rate: int, targets=None, method: str = "dax", config=None,
                  seed: int = 0, execution=None) -> AudioExplanation:
    """Explains the black box's decision on each clip, frame by frame (and band by band).

    Args:
      bb: a black box mapping float32 waveforms [n, S] -> probabilities [n, K] (any callable;
        an attribute `sample_rate` is checked against `sample_rate`).
      waveforms: float [B, S] mono clips of one length, at `sample_rate`.
      sample_rate: Hz.
      targets: int [B], a single int, or None for the black box's top-1 class.
      method: "dax", "rise", "lime", "kernelshap" or "occlusion".
      config: an `AudioConfig`, or the method's own config (wrapped in the default AudioConfig),
        or None.
      seed: with the clip and target, fixes the explanation.
      execution: a `daxjax.Execution` (clips per group, inputs per black-box call); speed and
        memory only, as for `daxjax.explain`.

    Returns:
      An `AudioExplanation`. When some maps come from answers that did not change under
      perturbation (`diagnostics["informative"]` False), one `methods.base.UninformativeWarning`
      names their positions.
    """
    start = time.perf_counter()
    config = resolve_config(method, config)
    execution = resolve_execution(execution)
    spec = config.spectrogram
    user_bb, bb = bb, as_blackbox(bb)
    rate = check_sample_rate(sample_rate, spec, user_bb)
    x = as_waveforms(waveforms, spec, rate)
    batch, samples = x.shape
    probs = check_probabilities(bb(x), batch, what="black box on the unperturbed clips")
    num_classes = probs.shape[1]
    targets = as_targets(targets, batch, num_classes, default=probs.argmax(axis=1))
    scores = probs[np.arange(batch), targets].astype(np.float32)
    digests = np.array([image_digest(clip, t) for clip, t in zip(x, targets)], np.uint32)

    t0 = time.perf_counter()
    db = _log_mel(jnp.asarray(x), spec, rate)
    # Images show each band's level above the clip's background, so that background (and the
    # fill, which sounds like it) is black and events stand out, as objects in a photo do.
    low = _floor(db, config.floor_quantile) + config.image_margin_db
    fills = fill_waveforms(x, digests, seed, config.fill, spec, config.floor_quantile)
    images = np.asarray(_images(db, low, spec))
    fill_images = np.asarray(_images(_log_mel(jnp.asarray(fills), spec, rate), low, spec))
    bands, frames = images.shape[1:3]
    segments = segment_map(config, bands, frames)
    num_segments = int(segments.max()) + 1
    timings = {"front_end": time.perf_counter() - t0}

    explainer = config.explainer
    tiles = config.segments == "time_frequency"
    segmented = REGISTRY[method].perturbs_segments
    if segmented or tiles:
        grid = (bands, frames)
        grid_images = images
    else:
        # RISE / Occlusion with time segments: masks vary along time only.
        grid = (1, frames)
        grid_images = np.zeros((batch, 1, frames, 1), np.float32)
    if tiles:
        render = TimeFrequencyRender(grid, samples, rate, spec)
    else:
        render = TimeRender(grid, samples, spec.hop_length, max(1, int(round(config.crossfade * rate))))

    def per_group(rows: np.ndarray) -> dict:
        extra = {"queries": RenderedQueries(render, x[rows], fills[rows])}
        if segmented:
            count = len(rows)
            extra["segmented"] = HostSegments(np.broadcast_to(segments, (count,) + grid).copy(),
                                              fill_images[rows], np.full(count, num_segments, np.int32),
                                              bucket_size(num_segments))
        return extra

    result = run_groups(REGISTRY[method].explain_group, device_blackbox(user_bb, bb, num_classes, input_rank=1),
                        grid_images, targets, digests, explainer, seed, execution=execution,
                        per_group=per_group)
    maps = result.maps
    for phase, seconds in result.timings.items():
        timings[phase] = timings.get(phase, 0.0) + seconds

    time_maps = np.asarray(normalise(jnp.asarray(maps.mean(axis=1, keepdims=True))))[:, 0]
    tf_maps = maps.transpose(0, 2, 1).copy() if tiles else None
    timings["total"] = time.perf_counter() - start
    warn_uninformative([int(i) for i in uninformative(result.diagnostics)], batch, what="the clips at positions")
    return AudioExplanation(time_maps, spec.frame_times(samples, rate), tf_maps, targets, scores,
                            np.asarray(db), method, config, rate, timings, result.diagnostics)

