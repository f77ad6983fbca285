"""What a removed stretch of audio is replaced with: the audio counterpart of an image fill.

A removed frame must sound like "nothing happens here" to the black box. Real clips sit on a
background (microphone, room, street); replacing an event with digital silence creates a
pattern no training clip had. So the default fill is the clip's own background, estimated as its
quietest frames:

  "noise_floor": Gaussian noise shaped to the mean power spectrum of the clip's quietest frames
     (a `floor_quantile` share of them), i.e. more of the clip's background.
  "white_noise": white Gaussian noise with the RMS of those quietest frames.
  "silence": zeros.

The noise of a clip is drawn from a generator seeded by (seed, the clip's digest), so a clip's
fill, like its explanation, depends only on (clip, target, seed, config).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from daxjax.audio.spectrogram import SpectrogramConfig, istft, power_spectrogram, stft

FILLS = ("noise_floor", "white_noise", "silence")


def quiet_frames(power: jax.Array, quantile: float) -> jax.Array:
    """Weights [frames] selecting a clip's quietest frames: power [frames, bins] -> {0, 1} float32.

    Frames whose total power is at most the `quantile` quantile of the clip's frame powers (at
    least the quietest one).
    """
    energy = power.sum(axis=-1)
    cut = jnp.quantile(energy, quantile)
    return (energy <= jnp.maximum(cut, energy.min())).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("how", "config", "quantile"))
def _fill(waveform, white, *, how: str, config: SpectrogramConfig, quantile: float):
    """One clip's fill from its waveform [S] and unit white noise [S]."""
    if how == "silence":
        return jnp.zeros_like(waveform)
    power = power_spectrogram(waveform, config)
    quiet = quiet_frames(power, quantile)
    floor_spectrum = (quiet[:, None] * power).sum(axis=0) / quiet.sum()  # [bins]
    if how == "white_noise":
        # Parseval for a Hann-windowed frame: sum_k |X_k|^2 = n_fft * sum_n (w_n x_n)^2, and a
        # one-sided spectrum counts inner bins once, so twice the one-sided sum ~ the two-sided one.
        window_power = np.sum(np.hanning(config.n_fft + 1)[:-1] ** 2)
        one_sided = floor_spectrum.sum() * 2.0 - floor_spectrum[0] - floor_spectrum[-1]
        rms = jnp.sqrt(one_sided / (config.n_fft * window_power))
        return white * rms
    # Shape white noise: scale each STFT bin to the floor's power, then invert.
    noise = stft(white, config)
    noise_power = jnp.mean(jnp.real(noise) ** 2 + jnp.imag(noise) ** 2, axis=0)
    gain = jnp.sqrt(floor_spectrum / jnp.maximum(noise_power, 1e-20))
    return istft(noise * gain, config, waveform.shape[-1])


def fill_waveforms(waveforms: np.ndarray, digests: np.ndarray, seed: int, how: str,
                   config: SpectrogramConfig, quantile: float = 0.1) -> np.ndarray:
    """Fills float32 [B, S] for clips float32 [B, S] (see the module docstring for `how`).

    digests: uint32 [B] clip fingerprints (`inputs.image_digest`), with `seed` the noise's source.
    """
    if how not in FILLS:
        raise ValueError(f"unknown audio fill {how!r}; valid: {', '.join(FILLS)}")
    fills = []
    for waveform, digest in zip(waveforms, digests):
        white = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(digest)]).standard_normal(waveform.shape[-1])
        fills.append(np.asarray(_fill(jnp.asarray(waveform), jnp.asarray(white, jnp.float32), how=how,
                                      config=config, quantile=float(quantile))))
    return np.stack(fills).astype(np.float32)
