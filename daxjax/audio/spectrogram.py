"""The audio front end in JAX: framing, STFT, mel filterbank, log-mel, and its inverse path.

Conventions (the same as `scipy.signal.ShortTimeFFT` with a periodic Hann window and zero
padding, and as librosa with ``center=True, pad_mode="constant"``):
  * the signal is padded with n_fft // 2 zeros at both ends ("centred" frames), so frame t is
    centred on sample t * hop_length, i.e. at t * hop_length / sample_rate seconds;
  * a clip of S samples has 1 + S // hop_length frames;
  * power spectrum |X|^2 of the periodic Hann-windowed frame, `n_fft // 2 + 1` bins;
  * mel scale of HTK, mel = 2595 log10(1 + f / 700); triangular filters with peak 1 between
    `n_mels + 2` mel-spaced edges from `fmin` to `fmax` (no area normalisation);
  * log-mel in dB, 10 log10(max(power, amin)).

Everything is a pure function of (config, waveforms [..., S]) and traceable, so the same code
runs inside jitted explainers and exports to ONNX (jax2onnx maps `jnp.fft.rfft` to `DFT`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from daxjax._checks import Replace


@dataclasses.dataclass(frozen=True)
class SpectrogramConfig(Replace):
    """How a waveform becomes the log-mel spectrogram that explanations are drawn on.

    sample_rate: Hz the waveforms are expected at; None accepts the rate given to
      `explain_audio` (a black box with a `sample_rate` attribute is checked against it).
    n_fft: samples per frame (window length) = FFT size.
    hop_length: samples between frame centres; its duration is the time resolution of maps.
    n_mels: mel bands, the frequency rows of spectrogram images and time x frequency maps.
    fmin, fmax: Hz range of the mel filterbank; fmax None = sample_rate / 2.
    amin: power floor before the logarithm (dB of silence = 10 log10(amin)).
    top_db: dynamic range of spectrogram images: `spectrogram_images` maps [low, low + top_db] dB
      to [0, 1].
    """

    sample_rate: int | None = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None
    amin: float = 1e-10
    top_db: float = 80.0

    def __post_init__(self):
        for name in ("n_fft", "hop_length", "n_mels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SpectrogramConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.sample_rate is not None and int(self.sample_rate) < 1:
            raise ValueError(f"SpectrogramConfig.sample_rate must be None or >= 1, got {self.sample_rate!r}")
        if self.hop_length > self.n_fft // 2:
            # Inverting a masked STFT (time x frequency tiles) needs overlapping Hann windows.
            raise ValueError(f"SpectrogramConfig.hop_length={self.hop_length} must be <= n_fft // 2 = "
                             f"{self.n_fft // 2} (overlapping windows)")
        if not (self.amin > 0 and self.top_db > 0 and self.fmin >= 0):
            raise ValueError("SpectrogramConfig: amin and top_db must be > 0 and fmin >= 0")

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames of a clip of `num_samples` samples (centred frames)."""
        return 1 + num_samples // self.hop_length

    def frame_times(self, num_samples: int, sample_rate: int) -> np.ndarray:
        """Frame centres in seconds, float64 [frames]."""
        return np.arange(self.num_frames(num_samples)) * self.hop_length / sample_rate

    def upper_frequency(self, sample_rate: int) -> float:
        return sample_rate / 2 if self.fmax is None else float(self.fmax)


@functools.lru_cache(maxsize=16)
def hann_window(n_fft: int) -> np.ndarray:
    """The periodic Hann window float32 [n_fft] (scipy.signal.get_window("hann", n_fft))."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular HTK-mel filters float32 [n_mels, n_fft // 2 + 1] (peak 1, no area normalisation).

    Filter b rises linearly from edge b to edge b + 1 and falls to edge b + 2, the n_mels + 2
    edges evenly spaced on the mel scale from fmin to fmax. A host constant.
    """
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel range must satisfy 0 <= fmin < fmax <= sample_rate / 2 = {sample_rate / 2:g} Hz; "
                         f"got fmin={fmin:g}, fmax={fmax:g}")
    bins_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins_hz[None] - lower) / (centre - lower)
    falling = (upper - bins_hz[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def config_filterbank(config: SpectrogramConfig, sample_rate: int) -> np.ndarray:
    return mel_filterbank(sample_rate, config.n_fft, config.n_mels, float(config.fmin),
                          config.upper_frequency(sample_rate))


def frame_starts(num_samples: int, config: SpectrogramConfig) -> np.ndarray:
    """First sample of each frame in the zero-padded signal, int32 [frames] (t * hop_length)."""
    return (np.arange(config.num_frames(num_samples)) * config.hop_length).astype(np.int32)


def windowed_frames(waveforms: jax.Array, config: SpectrogramConfig) -> jax.Array:
    """Centred, Hann-windowed frames: [..., S] -> float32 [..., frames, n_fft]."""
    num_samples = waveforms.shape[-1]
    half = config.n_fft // 2
    padded = jnp.pad(waveforms, [(0, 0)] * (waveforms.ndim - 1) + [(half, half)])
    index = frame_starts(num_samples, config)[:, None] + np.arange(config.n_fft)[None, :]
    return padded[..., index] * hann_window(config.n_fft)


def stft(waveforms: jax.Array, config: SpectrogramConfig) -> jax.Array:
    """Complex STFT of centred, Hann-windowed frames: [..., S] -> complex64 [..., frames, bins]."""
    return jnp.fft.rfft(windowed_frames(waveforms, config), axis=-1)


@functools.lru_cache(maxsize=16)
def dft_matrices(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary one-sided DFT bases float32 [n_fft, n_fft // 2 + 1] (host constants)."""
    angle = 2 * np.pi * np.outer(np.arange(n_fft), np.arange(n_fft // 2 + 1)) / n_fft
    return np.cos(angle).astype(np.float32), (-np.sin(angle)).astype(np.float32)


def power_spectrogram(waveforms: jax.Array, config: SpectrogramConfig, dft: str = "fft") -> jax.Array:
    """|STFT|^2: [..., S] -> float32 [..., frames, bins].

    dft: "fft" (jnp.fft) or "matmul" (two matrix products with the DFT bases: the same numbers
    from ops every ONNX runtime has, for models exported with their own front end).
    """
    if dft == "matmul":
        frames = windowed_frames(waveforms, config)
        real, imag = dft_matrices(config.n_fft)
        return (frames @ real) ** 2 + (frames @ imag) ** 2
    spectrum = stft(waveforms, config)
    return jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2


def log_mel(waveforms: jax.Array, config: SpectrogramConfig, sample_rate: int, dft: str = "fft") -> jax.Array:
    """Log-mel spectrogram in dB: [..., S] -> float32 [..., n_mels, frames] (bands first, as images)."""
    mel = power_spectrogram(waveforms, config, dft) @ config_filterbank(config, sample_rate).T
    db = 10.0 * jnp.log10(jnp.maximum(mel, config.amin))
    return jnp.swapaxes(db, -1, -2)


def spectrogram_images(db: jax.Array, low_db: jax.Array, config: SpectrogramConfig) -> jax.Array:
    """Log-mel dB [B, bands, frames] as images [B, bands, frames, 1] in [0, 1].

    [low_db, low_db + top_db] maps to [0, 1], quieter values to 0, louder to 1; low_db broadcasts
    against [B, bands, frames]: [B, 1, 1] for one level per clip (e.g. its maximum - top_db),
    [B, bands, 1] for one per band (e.g. the band's noise floor).
    """
    return jnp.clip((db - low_db) / config.top_db, 0.0, 1.0)[..., None]


def noise_floor_db(db: jax.Array, quantile: float) -> jax.Array:
    """Each band's level in its quiet frames: the `quantile` quantile over frames of dB [B, bands, frames] -> [B, bands, 1]."""
    return jnp.quantile(db, quantile, axis=-1, keepdims=True)


def istft(spectrum: jax.Array, config: SpectrogramConfig, num_samples: int) -> jax.Array:
    """Inverse of `stft` by weighted overlap-add: complex [..., frames, bins] -> float32 [..., S].

    Least-squares inverse (Griffin & Lim): sum_t w * irfft(X_t) / sum_t w^2, which returns the
    signal exactly for an unmodified STFT (every sample is covered by a window > 0 when
    hop_length <= n_fft // 2).
    """
    window = hann_window(config.n_fft)
    frames = jnp.fft.irfft(spectrum, n=config.n_fft, axis=-1) * window
    half = config.n_fft // 2
    length = num_samples + 2 * half
    index = frame_starts(num_samples, config)[:, None] + np.arange(config.n_fft)[None, :]
    lead = frames.shape[:-2]
    summed = jnp.zeros(lead + (length,), frames.dtype).at[..., index].add(frames)
    # np.bincount, not np.add.at: numpy 2.4's add.at mis-adds broadcast values (measured here).
    envelope = np.bincount(index.ravel(), np.tile(window.astype(np.float64) ** 2, len(index)), length)
    inverse_envelope = np.where(envelope > 1e-8, 1.0 / np.maximum(envelope, 1e-8), 0.0).astype(np.float32)
    return (summed * inverse_envelope)[..., half:half + num_samples]
