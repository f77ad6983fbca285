"""Judging audio explanations: ground-truth intervals, 1-D IoU and deletion over time.

Maps are float [B, F] over frames (`AudioExplanation.maps`); ground truth is a time interval
per clip, turned into the frames whose centres lie inside it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from blackbox_adapters import as_blackbox, check_probabilities
from daxjax import metrics
from daxjax.audio.explain import AudioConfig
from daxjax.audio.fills import fill_waveforms
from daxjax.audio.inputs import as_waveforms, check_sample_rate
from daxjax.audio.render import TimeRender
from daxjax.inputs import InputError, as_targets, image_digest
from daxjax.device.querying import device_blackbox, query_targets


def interval_masks(intervals, frame_times: np.ndarray) -> np.ndarray:
    """bool [B, F]: frames whose centre lies in [start, end) of each clip's interval [B, 2] (seconds)."""
    spans = np.asarray(intervals, np.float64)
    if spans.ndim != 2 or spans.shape[1] != 2:
        raise InputError(f"intervals must have shape [B, 2] (start, end seconds); got {spans.shape}")
    times = np.asarray(frame_times, np.float64)[None, :]
    return (times >= spans[:, :1]) & (times < spans[:, 1:])


def iou(maps, truth, k: float = 1.0) -> np.ndarray:
    """1-D IoU of each map [B, F], thresholded at mean + k std, with bool frames truth [B, F]: [B].

    The paper's protocol (threshold mean + 1 std) on time: `daxjax.metrics.iou` on 1 x F maps.
    """
    maps, truth = np.asarray(maps), np.asarray(truth)
    if maps.ndim != 2 or maps.shape != truth.shape:
        raise InputError(f"maps and truth must both be [B, frames]; got {maps.shape} and {truth.shape}")
    return metrics.iou(maps[:, None, :], truth[:, None, :], k=k)


def explained_intervals(saliency: np.ndarray, frame_times: np.ndarray, k: float = 1.0) -> list[tuple[float, float]]:
    """The runs of frames of one map [F] above mean + k std, as (start, end) seconds (frame spans)."""
    region = metrics.binarize(np.asarray(saliency, np.float32)[None, None, :], k=k)[0, 0]
    hop = float(frame_times[1] - frame_times[0]) if len(frame_times) > 1 else 0.0
    edges = np.diff(np.concatenate([[0], region.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(max(0.0, frame_times[s] - hop / 2), frame_times[e] + hop / 2) for s, e in zip(starts, ends)]


@dataclasses.dataclass(frozen=True)
class DeletionCurve:
    """`query_targets` build: point i of the deletion curve of one clip, i in [start, start + size).

    Point i has the floor(i * F / steps) most salient frames (rank < count) removed.
    """

    render: Callable
    steps: int

    def __call__(self, source, fill, rank, start, size: int) -> jax.Array:
        frames = rank.shape[0]
        counts = ((start + jnp.arange(size)) * frames) // self.steps
        keep = (rank[None, :] >= counts[:, None]).astype(jnp.float32)
        return self.render(keep[:, None, :], source, fill)


def deletion_auc(bb, waveforms, maps, targets, sample_rate: int, config: AudioConfig | None = None, *,
                 steps: int = 50, normalize: bool = False, seed: int = 0, chunk: int = 64) -> np.ndarray:
    """Area under the deletion curve over time for each clip, float32 [B]; lower is better.

    Frames are removed in descending order of the map [B, F] (ties: earlier frames first), 1/steps
    of the frames per step; removed frames hear `config.fill` (default: the clip's noise floor)
    through the same rendering as the explainers' queries. The curve is the black box's
    probability of the target at each of the steps + 1 points, integrated over the removed
    fraction with the trapezoid rule; `normalize` divides it by the unperturbed probability.
    """
    config = AudioConfig() if config is None else config
    spec = config.spectrogram
    user_bb, bb = bb, as_blackbox(bb)
    rate = check_sample_rate(sample_rate, spec, user_bb)
    x = as_waveforms(waveforms, spec, rate)
    batch, samples = x.shape
    frames = spec.num_frames(samples)
    maps = np.asarray(maps, np.float32)
    if maps.shape != (batch, frames):
        raise InputError(f"maps must have shape [B, frames] = ({batch}, {frames}); got {maps.shape}")
    if not np.isfinite(maps).all():
        raise InputError(f"map(s) {np.flatnonzero(~np.isfinite(maps).all(axis=1)).tolist()} contain NaN or inf")
    if int(steps) < 1:
        raise InputError(f"steps must be >= 1, got {steps!r}")
    probs = check_probabilities(bb(x), batch, what="black box on the unperturbed clips")
    targets = as_targets(targets, batch, probs.shape[1], default=probs.argmax(axis=1))
    digests = np.array([image_digest(clip, t) for clip, t in zip(x, targets)], np.uint32)
    fills = fill_waveforms(x, digests, seed, config.fill, spec, config.floor_quantile)
    # rank[f] = position of frame f in descending saliency (stable: earlier frames first on ties).
    order = np.argsort(-maps, axis=1, kind="stable")
    rank = np.argsort(order, axis=1).astype(np.int32)
    render = TimeRender((1, frames), samples, spec.hop_length, max(1, int(round(config.crossfade * rate))))
    device_bb = device_blackbox(user_bb, bb, probs.shape[1], input_rank=1)
    curves = np.asarray(query_targets(device_bb, DeletionCurve(render, int(steps)),
                                      (jnp.asarray(x), jnp.asarray(fills), jnp.asarray(rank)),
                                      jnp.asarray(targets, jnp.int32), int(steps) + 1, chunk,
                                      list(range(batch))), np.float64)
    fractions = np.floor(np.arange(int(steps) + 1) * frames / int(steps)) / frames
    auc = np.sum((curves[:, 1:] + curves[:, :-1]) / 2 * np.diff(fractions), axis=1)
    if normalize:
        auc = auc / np.maximum(curves[:, 0], 1e-12)
    return auc.astype(np.float32)
