"""Planted black boxes, scenes and clips: decisions that depend only on a known region or span."""

import numpy as np


def red_fraction_box(x: np.ndarray) -> np.ndarray:
    """Two classes; P(class 1) rises with the fraction of pure-red pixels. x: [n, H, W, 3]."""
    red = (x[..., 0] > 0.8) & (x[..., 1] < 0.2) & (x[..., 2] < 0.2)
    frac = red.reshape(len(x), -1).mean(axis=1)
    logit = 40.0 * (frac - 0.03)
    p1 = 1.0 / (1.0 + np.exp(-logit))
    return np.stack([1.0 - p1, p1], axis=1).astype(np.float32)


def red_and_distractor_scene(seed: int, size: int = 64):
    """A textured background with a red square (the cause) and a blue square (ignored).

    Returns (image float32 [H, W, 3], red mask bool [H, W], blue mask bool [H, W]).
    """
    rng = np.random.default_rng(seed)
    img = rng.uniform(0.3, 0.7, (size, size, 3)).astype(np.float32)
    img = np.clip(img + np.linspace(-0.2, 0.2, size)[None, :, None], 0.0, 1.0).astype(np.float32)
    side = size // 4
    cells = [(r, c) for r in range(0, size - side, side) for c in range(0, size - side, side)]
    order = rng.permutation(len(cells))
    (r0, c0), (r1, c1) = cells[order[0]], cells[order[1]]
    red = np.zeros((size, size), bool)
    blue = np.zeros((size, size), bool)
    red[r0:r0 + side, c0:c0 + side] = True
    blue[r1:r1 + side, c1:c1 + side] = True
    img[red] = (0.95, 0.05, 0.05)
    img[blue] = (0.05, 0.05, 0.95)
    return img, red, blue


# Sound: 2 s clips at 8 kHz whose label depends only on the energy in SOUND_SPAN (seconds).
SOUND_RATE = 8000
SOUND_SECONDS = 2.0
SOUND_SPAN = (0.8, 1.3)


def span_energy_box(waveforms):
    """Two classes; P(class 1) rises with the energy in SOUND_SPAN and ignores everything else."""
    lo, hi = int(SOUND_SPAN[0] * SOUND_RATE), int(SOUND_SPAN[1] * SOUND_RATE)
    energy = np.log10(np.mean(np.asarray(waveforms)[:, lo:hi] ** 2, axis=1) + 1e-8)
    p1 = 1.0 / (1.0 + np.exp(-6.0 * (energy - np.log10(0.02))))
    return np.stack([1.0 - p1, p1], axis=1).astype(np.float32)


def span_tone_clips(count=3, seed=0):
    """float32 [count, samples]: background noise, a tone in SOUND_SPAN (the cause) and an equally
    loud tone elsewhere (ignored)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SOUND_SECONDS * SOUND_RATE)) / SOUND_RATE
    inside = (t >= SOUND_SPAN[0]) & (t < SOUND_SPAN[1])
    clips = []
    for i in range(count):
        clip = 0.01 * rng.standard_normal(t.size)
        clip[inside] += 0.3 * np.sin(2 * np.pi * (500 + 100 * i) * t[inside])
        start = rng.uniform(0.0, 1.5)
        distractor = (t >= start) & (t < start + 0.3) & ~inside
        clip[distractor] += 0.3 * np.sin(2 * np.pi * 900 * t[distractor])
        clips.append(clip)
    return np.stack(clips).astype(np.float32)
