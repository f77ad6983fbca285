"""From perturbation masks on the spectrogram grid to the waveforms the black box hears.

Every explainer perturbs with masks over an H x W grid (1 keeps, 0 removes); for audio the grid
is the log-mel spectrogram's (bands x frames, or 1 x frames for time-only masks). A render turns
a mask into a waveform, mixing the clip with its fill (`audio.fills`):

  * `TimeRender`: time segments. A frame's mask (mean over the grid's rows) is its gain over the
    frame's span of samples [centre - hop / 2, centre + hop / 2); the gain curve is smoothed by a
    short moving average (`crossfade`) so that switching frames on and off adds no clicks;
    waveform = g * clip + (1 - g) * fill.
  * `TimeFrequencyRender`: time x frequency tiles. The mask [bands, frames] becomes a gain per
    STFT bin and frame (each bin takes its mel bands' masks, weighted by the filterbank), the
    complex STFTs of clip and fill are mixed with it, and the mix is inverted (`istft`).

Both are frozen dataclasses (hashable: they key the compiled query programs) with `grid`, as
`querying.RenderedQueries` requires; both return the clip itself for an all-ones mask.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from daxjax.audio.spectrogram import SpectrogramConfig, config_filterbank, istft, stft


@functools.lru_cache(maxsize=16)
def sample_frames(num_samples: int, hop_length: int, num_frames: int) -> np.ndarray:
    """Frame whose span holds each sample: int32 [S], round(s / hop) clipped to the frames."""
    return np.minimum((np.arange(num_samples) + hop_length // 2) // hop_length, num_frames - 1).astype(np.int32)


def moving_average(x: jax.Array, width: int) -> jax.Array:
    """Centred moving average over the last axis (edges repeated), same shape; width 1 is x."""
    if width <= 1:
        return x
    before, after = width // 2, width - 1 - width // 2
    padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(before + 1, after)], mode="edge")
    total = jnp.cumsum(padded, axis=-1)
    return (total[..., width:] - total[..., :-width]) / width


@dataclasses.dataclass(frozen=True)
class TimeRender:
    """Masks [n, rows, frames] -> waveforms [n, S]: per-frame gains between clip and fill.

    grid: (rows, frames) of the masks; rows are averaged (1 for time-only masks, or the bands of
      a spectrogram whose segments are whole frame columns).
    num_samples, hop_length: the clip's length and the front end's hop (frame t spans the samples
      nearest to its centre t * hop_length).
    crossfade: samples of the moving average that smooths the gain curve (1 = hard switches).
    """

    grid: tuple[int, int]
    num_samples: int
    hop_length: int
    crossfade: int

    def __call__(self, masks: jax.Array, source: jax.Array, fill: jax.Array) -> jax.Array:
        frame_gain = masks.mean(axis=-2)
        gain = frame_gain[..., sample_frames(self.num_samples, self.hop_length, self.grid[1])]
        gain = moving_average(gain, self.crossfade)
        return gain * source[None] + (1.0 - gain) * fill[None]


@functools.lru_cache(maxsize=16)
def band_to_bin_weights(config: SpectrogramConfig, sample_rate: int) -> np.ndarray:
    """How much each mel band's mask counts at each STFT bin: float32 [bands, bins], columns sum to 1.

    A bin takes the masks of the bands whose filters cover it, in proportion to the filter
    weights; bins no filter covers (below the first or above the last centre's reach) take the
    band with the nearest centre.
    """
    filters = config_filterbank(config, sample_rate).astype(np.float64)
    covered = filters.sum(axis=0)
    weights = filters / np.maximum(covered, 1e-12)
    bins_hz = np.arange(config.num_bins) * sample_rate / config.n_fft
    centres = (filters * bins_hz).sum(axis=1) / np.maximum(filters.sum(axis=1), 1e-12)
    nearest = np.abs(bins_hz[None, :] - centres[:, None]).argmin(axis=0)
    uncovered = covered <= 1e-12
    weights[:, uncovered] = 0.0
    weights[nearest[uncovered], np.flatnonzero(uncovered)] = 1.0
    return weights.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TimeFrequencyRender:
    """Masks [n, bands, frames] -> waveforms [n, S] by masking the STFT and inverting it.

    grid: (bands, frames) = (config.n_mels, frames of the clip).
    """

    grid: tuple[int, int]
    num_samples: int
    sample_rate: int
    config: SpectrogramConfig

    def __call__(self, masks: jax.Array, source: jax.Array, fill: jax.Array) -> jax.Array:
        clip, background = stft(source, self.config), stft(fill, self.config)
        gain = jnp.einsum("nbt,bk->ntk", masks, band_to_bin_weights(self.config, self.sample_rate))
        mixed = gain * clip[None] + (1.0 - gain) * background[None]
        return istft(mixed, self.config, self.num_samples)
