"""Audio: front end against scipy, rendering, a planted black box DAX must find, bad input."""

import numpy as np
import pytest
import scipy.signal

import daxjax
from daxjax import DAXConfig, InputError, LIMEConfig, OcclusionConfig, RISEConfig
from daxjax.audio import AudioConfig, SpectrogramConfig, explain_audio
from daxjax.audio import metrics as audio_metrics
from daxjax.audio.fills import fill_waveforms
from daxjax.audio.render import TimeFrequencyRender, TimeRender
from daxjax.audio.spectrogram import istft, log_mel, mel_filterbank, power_spectrogram, stft

from planted import SOUND_RATE as RATE, SOUND_SECONDS as SECONDS, SOUND_SPAN as SPAN
from planted import span_energy_box as planted_box, span_tone_clips as planted_clips

SPEC = SpectrogramConfig(sample_rate=RATE, n_fft=256, hop_length=128, n_mels=32)
HOP_SECONDS = SPEC.hop_length / RATE


def span_truth(count, frames):
    times = np.arange(frames) * HOP_SECONDS
    return np.repeat(((times >= SPAN[0]) & (times < SPAN[1]))[None], count, axis=0)


# ------------------------------------------------------------------------------------------------
# Front end


def test_stft_matches_scipy_and_inverts():
    x = np.random.default_rng(1).standard_normal((2, 3000)).astype(np.float32)
    ours = np.asarray(stft(x, SPEC))
    reference = scipy.signal.ShortTimeFFT(scipy.signal.get_window("hann", SPEC.n_fft), hop=SPEC.hop_length,
                                          fs=RATE, scale_to=None)
    frames = SPEC.num_frames(3000)
    assert ours.shape == (2, frames, SPEC.n_fft // 2 + 1)
    for clip in range(2):
        # scipy's phase is referred to the window centre, ours to the frame start: (-1)^k.
        expected = reference.stft(x[clip])[:, :frames].T * (-1.0) ** np.arange(SPEC.n_fft // 2 + 1)
        np.testing.assert_allclose(ours[clip], expected, atol=2e-4 * np.abs(expected).max())
    np.testing.assert_allclose(np.asarray(istft(stft(x, SPEC), SPEC, 3000)), x, atol=1e-5)
    np.testing.assert_allclose(np.asarray(power_spectrogram(x, SPEC, dft="matmul")),
                               np.asarray(power_spectrogram(x, SPEC)), rtol=1e-3, atol=1e-3)


def _numpy_mel_filters(rate, n_fft, n_mels, fmax):
    """A reference built differently: each filter by interpolation on the mel axis."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    bins = mel(np.arange(n_fft // 2 + 1) * rate / n_fft)
    edges = np.linspace(0.0, mel(fmax), n_mels + 2)
    return np.stack([np.interp(bins, edges[b:b + 3], [0.0, 1.0, 0.0], left=0.0, right=0.0)
                     for b in range(n_mels)])


def test_log_mel_matches_a_numpy_reference():
    x = np.random.default_rng(2).standard_normal((1, 4000)).astype(np.float32)
    filters = _numpy_mel_filters(RATE, SPEC.n_fft, SPEC.n_mels, RATE / 2)
    # On the mel axis the triangles are exact; on Hz they are the same triangles (HTK filters
    # are linear in Hz between their edges), so both constructions agree to round-off.
    np.testing.assert_allclose(mel_filterbank(RATE, SPEC.n_fft, SPEC.n_mels, 0.0, RATE / 2), filters, atol=0.02)
    _, _, spectrum = scipy.signal.stft(x[0], fs=RATE, window="hann", nperseg=SPEC.n_fft,
                                       noverlap=SPEC.n_fft - SPEC.hop_length, boundary="zeros", padded=False,
                                       scaling="spectrum")
    power = np.abs(spectrum * np.hanning(SPEC.n_fft + 1)[:-1].sum()) ** 2   # undo scipy's 1/sum(w) scaling
    frames = min(power.shape[1], SPEC.num_frames(4000))
    expected = 10 * np.log10(np.maximum(mel_filterbank(RATE, SPEC.n_fft, SPEC.n_mels, 0.0, RATE / 2) @ power,
                                        SPEC.amin))[:, :frames]
    ours = np.asarray(log_mel(x, SPEC, RATE))[0, :, :frames]
    np.testing.assert_allclose(ours, expected, atol=1e-2)


def test_frame_times_are_frame_centres():
    samples = int(SECONDS * RATE)
    clicks_at = [0.25, 1.0, 1.6]   # one click per clip
    x = 1e-4 * np.random.default_rng(0).standard_normal((3, samples)).astype(np.float32)
    for clip, t in enumerate(clicks_at):
        x[clip, int(t * RATE)] = 1.0
    ex = explain_audio(planted_box, x, RATE, method="occlusion",
                       config=AudioConfig(spectrogram=SPEC, explainer=OcclusionConfig(window=4, stride=4)))
    assert ex.frame_times.shape == (1 + samples // SPEC.hop_length,)
    np.testing.assert_allclose(ex.frame_times, np.arange(ex.frame_times.size) * SPEC.hop_length / RATE)
    # A click is loudest in the frame whose centre is nearest to it (its window peaks there).
    loudest = np.asarray(log_mel(x, SPEC, RATE)).max(axis=1).argmax(axis=1)
    np.testing.assert_array_equal(loudest, np.abs(ex.frame_times[None] - np.array(clicks_at)[:, None]).argmin(1))


def test_renders_return_the_clip_for_a_full_mask_and_the_fill_for_an_empty_one():
    x = planted_clips(1)[0]
    fill = np.asarray(fill_waveforms(x[None], np.array([7], np.uint32), 0, "noise_floor", SPEC))[0]
    frames = SPEC.num_frames(x.size)
    for render, grid in [(TimeRender((1, frames), x.size, SPEC.hop_length, 32), (1, frames)),
                         (TimeFrequencyRender((SPEC.n_mels, frames), x.size, RATE, SPEC), (SPEC.n_mels, frames))]:
        out = np.asarray(render(np.stack([np.ones(grid), np.zeros(grid)]).astype(np.float32), x, fill))
        np.testing.assert_allclose(out[0], x, atol=1e-4)
        np.testing.assert_allclose(out[1], fill, atol=1e-4)


def test_noise_floor_fill_sounds_like_the_background_and_is_deterministic():
    x = planted_clips(1)
    background = x[0, :int(0.1 * RATE)].std()   # the first 0.1 s: noise only in every planted clip
    one = fill_waveforms(x, np.array([3], np.uint32), 0, "noise_floor", SPEC)
    assert 0.5 * background < one.std() < 2.0 * background
    np.testing.assert_array_equal(one, fill_waveforms(x, np.array([3], np.uint32), 0, "noise_floor", SPEC))
    assert not np.allclose(one, fill_waveforms(x, np.array([3], np.uint32), 1, "noise_floor", SPEC))
    assert np.all(fill_waveforms(x, np.array([3], np.uint32), 0, "silence", SPEC) == 0)


# ------------------------------------------------------------------------------------------------
# Explanations through the engine


def test_dax_time_map_finds_the_planted_span():
    x = planted_clips(3)
    config = AudioConfig(spectrogram=SPEC, explainer=DAXConfig(num_samples=1000))
    ex = explain_audio(planted_box, x, RATE, method="dax", config=config, seed=0)
    frames = SPEC.num_frames(x.shape[1])
    assert ex.maps.shape == (3, frames) and ex.maps.dtype == np.float32
    assert ex.maps.min() >= 0.0 and ex.maps.max() <= 1.0
    assert ex.tf_maps is None
    assert np.all(ex.targets == 1)
    iou = audio_metrics.iou(ex.maps, span_truth(3, frames))
    assert iou.mean() >= 0.5, iou
    assert iou.min() >= 0.3, iou


@pytest.mark.parametrize("method, config", [
    ("rise", RISEConfig(num_samples=300, cells=16)),
    ("lime", LIMEConfig(num_samples=300)),
    ("kernelshap", daxjax.KernelSHAPConfig(num_samples=300)),
    ("occlusion", OcclusionConfig(window=8, stride=4)),
])
def test_baselines_find_the_planted_span_through_the_same_engine(method, config):
    x = planted_clips(2)
    ex = explain_audio(planted_box, x, RATE, method=method, config=AudioConfig(spectrogram=SPEC, explainer=config))
    iou = audio_metrics.iou(ex.maps, span_truth(2, ex.maps.shape[1]))
    assert iou.min() >= 0.5, (method, iou)


def test_time_frequency_tiles_point_at_the_planted_band():
    """A black box that hears only 1.5-2.5 kHz in SPAN: the tiles' top cell lies there."""
    def band_box(waveforms):
        lo, hi = int(SPAN[0] * RATE), int(SPAN[1] * RATE)
        b, a = scipy.signal.butter(4, [1500, 2500], btype="band", fs=RATE)
        energy = np.log10(np.mean(scipy.signal.lfilter(b, a, waveforms[:, lo:hi], axis=1) ** 2, axis=1) + 1e-8)
        p1 = 1.0 / (1.0 + np.exp(-6.0 * (energy - np.log10(0.01))))
        return np.stack([1.0 - p1, p1], axis=1).astype(np.float32)

    rng = np.random.default_rng(3)
    t = np.arange(int(SECONDS * RATE)) / RATE
    inside = (t >= SPAN[0]) & (t < SPAN[1])
    x = 0.01 * rng.standard_normal((1, t.size))
    x[0, inside] += 0.3 * np.sin(2 * np.pi * 2000 * t[inside]) + 0.3 * np.sin(2 * np.pi * 400 * t[inside])
    config = AudioConfig(spectrogram=SPEC, segments="time_frequency", segment_frames=4, segment_bands=4,
                         explainer=LIMEConfig(num_samples=600))
    ex = explain_audio(band_box, x.astype(np.float32), RATE, method="lime", config=config)
    assert ex.tf_maps.shape == (1, SPEC.num_frames(t.size), SPEC.n_mels)
    frame, band = np.unravel_index(np.argmax(ex.tf_maps[0]), ex.tf_maps.shape[1:])
    filters = mel_filterbank(RATE, SPEC.n_fft, SPEC.n_mels, 0.0, RATE / 2)
    centre_hz = (filters * np.arange(filters.shape[1])).sum(1) / filters.sum(1) * RATE / SPEC.n_fft
    assert SPAN[0] - HOP_SECONDS <= ex.frame_times[frame] <= SPAN[1] + HOP_SECONDS
    assert 1300 <= centre_hz[band] <= 2700, centre_hz[band]


def test_explanations_do_not_depend_on_the_batch():
    x = planted_clips(3, seed=5)
    config = AudioConfig(spectrogram=SPEC, explainer=LIMEConfig(num_samples=100))
    together = explain_audio(planted_box, x, RATE, method="lime", config=config).maps
    alone = explain_audio(planted_box, x[2:], RATE, method="lime", config=config).maps
    np.testing.assert_allclose(together[2], alone[0], atol=1e-6)


def test_deletion_auc_prefers_the_planted_span():
    x = planted_clips(2)
    truth = span_truth(2, SPEC.num_frames(x.shape[1])).astype(np.float32)
    config = AudioConfig(spectrogram=SPEC)
    right = audio_metrics.deletion_auc(planted_box, x, truth, 1, RATE, config, steps=20)
    wrong = audio_metrics.deletion_auc(planted_box, x, 1.0 - truth, 1, RATE, config, steps=20)
    assert np.all(right < wrong - 0.2), (right, wrong)


def test_audio_overlays_write_pngs(tmp_path):
    from daxjax.audio.viz import save_audio_panel

    x = planted_clips(1)
    frames = SPEC.num_frames(x.shape[1])
    db = np.asarray(log_mel(x, SPEC, RATE))[0]
    times = np.arange(frames) * HOP_SECONDS
    time_map = span_truth(1, frames)[0].astype(np.float32)
    path = save_audio_panel(tmp_path / "clip.png", x[0], RATE, db, times, {"truth as a map": time_map},
                            truth=[SPAN], tf_maps={"truth as a map": np.repeat(time_map[:, None], SPEC.n_mels, 1)})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert audio_metrics.explained_intervals(time_map, times) == [(pytest.approx(0.8 - HOP_SECONDS / 2),
                                                                   pytest.approx(1.296 + HOP_SECONDS / 2))]


# ------------------------------------------------------------------------------------------------
# Bad input


def run(x, rate=RATE, bb=planted_box, config=None, **kw):
    config = config or AudioConfig(spectrogram=SPEC, explainer=LIMEConfig(num_samples=64))
    return explain_audio(bb, x, rate, method="lime", config=config, **kw)


def test_wrong_sample_rate_is_an_error_naming_both_rates():
    with pytest.raises(InputError, match=r"sample_rate=16000 Hz.*expects 8000 Hz"):
        run(planted_clips(1), rate=16000)

    class DeclaredRate:
        sample_rate = 16000
        num_classes = 2

        def __call__(self, x):
            return planted_box(x)

    config = AudioConfig(spectrogram=SPEC.replace(sample_rate=None), explainer=LIMEConfig(num_samples=64))
    with pytest.raises(InputError, match=r"sample_rate=8000 Hz.*black box declares sample_rate=16000"):
        run(planted_clips(1), bb=DeclaredRate(), config=config)
    with pytest.raises(InputError, match="positive whole number"):
        run(planted_clips(1), rate=-8000)


@pytest.mark.parametrize("bad, pattern", [
    (np.zeros((2, 16000, 2), np.float32), r"mono.*channel axis of size 2.*stereo"),
    (np.zeros((2, 2, 16000), np.float32), r"mono.*channel axis of size 2.*stereo"),
    (np.zeros(16000, np.float32), r"single clip"),
    (np.zeros((2, 100), np.float32), r"shorter than one STFT frame.*n_fft = 256"),
    (np.zeros((2, 16000), np.int16), r"floating point.*32768"),
    (np.zeros((0, 16000), np.float32), r"empty batch"),
    ([np.zeros(16000, np.float32), np.zeros(15000, np.float32)], r"clip 1 has"),
])
def test_bad_clips_are_errors_that_say_what_is_wrong(bad, pattern):
    with pytest.raises(InputError, match=pattern):
        run(bad)


def test_nan_samples_name_the_clip():
    x = planted_clips(3)
    x[1, 500] = np.nan
    with pytest.raises(InputError, match=r"clip\(s\) 1 contain NaN"):
        run(x)


def test_unsupported_method_and_mismatched_config_are_errors():
    with pytest.raises(InputError, match="unsupported audio method"):
        explain_audio(planted_box, planted_clips(1), RATE, method="gradient")
    with pytest.raises(InputError, match="takes a DAXConfig"):
        explain_audio(planted_box, planted_clips(1), RATE, method="dax", config=RISEConfig())
    with pytest.raises(ValueError, match="hop_length=200 must be <= n_fft // 2"):
        SpectrogramConfig(n_fft=256, hop_length=200)
