"""Checks on the clips and sample rate callers hand to `explain_audio`: errors name the input."""

from __future__ import annotations

import numpy as np

from daxjax.audio.spectrogram import SpectrogramConfig
from daxjax.inputs import InputError, _indices


def as_waveforms(waveforms, config: SpectrogramConfig, sample_rate: int) -> np.ndarray:
    """Validates a batch of mono clips and returns it as float32 [B, S].

    Accepts a floating array [B, S] or a sequence of B floating 1-D clips of one length. Nothing
    is resampled, mixed down, padded or clipped: a clip that is stereo, of another length, holds
    NaN/inf or is shorter than one STFT frame is an error naming it.
    """
    if isinstance(waveforms, (list, tuple)):
        lengths = [np.shape(w) for w in waveforms]
        if len(set(lengths)) > 1:
            first = lengths[0]
            other = next(i for i, shape in enumerate(lengths) if shape != first)
            raise InputError(f"waveforms must all have one shape: clip 0 has shape {first}, clip {other} "
                             f"has {lengths[other]}; pad or crop them to one length")
    arr = np.asarray(waveforms)
    if arr.ndim == 1:
        raise InputError(f"waveforms must have shape [B, samples]; got shape {arr.shape} "
                         "(a single clip? add a batch axis: waveforms[None])")
    if arr.ndim == 3:
        channel_axis = 2 if arr.shape[2] <= arr.shape[1] else 1
        raise InputError(f"waveforms must be mono [B, samples]; got shape {arr.shape}, which has a channel "
                         f"axis of size {arr.shape[channel_axis]} (stereo?): mix down first, e.g. "
                         f"waveforms.mean(axis={channel_axis})")
    if arr.ndim != 2:
        raise InputError(f"waveforms must be mono clips of shape [B, samples]; got shape {arr.shape}")
    batch, samples = arr.shape
    if batch == 0:
        raise InputError("waveforms is an empty batch (B = 0): nothing to explain")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"waveforms must be floating point; got dtype {arr.dtype} "
                         "(16-bit PCM: divide by 32768)")
    if samples < config.n_fft:
        raise InputError(
            f"clips have {samples} samples ({1000 * samples / sample_rate:.1f} ms at {sample_rate} Hz), "
            f"shorter than one STFT frame (n_fft = {config.n_fft} samples, "
            f"{1000 * config.n_fft / sample_rate:.1f} ms)")
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InputError(f"clip(s) {_indices(bad)} contain NaN or inf samples")
    return arr


def check_sample_rate(sample_rate, config: SpectrogramConfig, bb) -> int:
    """The sample rate as an int, after checking it against the config and the black box.

    A black box (or adapter) with a `sample_rate` attribute declares the rate it was trained at;
    a mismatch is an error, as is a rate the config's front end was not set up for.
    """
    if isinstance(sample_rate, bool) or not np.issubdtype(type(sample_rate), np.number) \
            or sample_rate != int(sample_rate) or int(sample_rate) < 1:
        raise InputError(f"sample_rate must be a positive whole number of Hz; got {sample_rate!r}")
    rate = int(sample_rate)
    if config.sample_rate is not None and rate != config.sample_rate:
        raise InputError(f"sample_rate={rate} Hz, but the spectrogram config expects "
                         f"{config.sample_rate} Hz: resample the waveforms (nothing is resampled "
                         "silently) or set SpectrogramConfig(sample_rate=...)")
    declared = getattr(bb, "sample_rate", None)
    if declared is not None and int(declared) != rate:
        raise InputError(f"sample_rate={rate} Hz, but the black box declares sample_rate={declared} Hz: "
                         "resample the waveforms")
    fmax = config.upper_frequency(rate)
    if fmax > rate / 2 or config.fmin >= fmax:
        raise InputError(f"the mel range fmin={config.fmin:g} Hz .. fmax={fmax:g} Hz does not fit "
                         f"sample_rate={rate} Hz (fmax must be <= {rate / 2:g} Hz)")
    return rate
