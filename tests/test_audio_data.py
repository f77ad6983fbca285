"""The audio benchmark's clips (real sounds, exact intervals) and its committed black box."""

import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.datasets.audio import data

REASON = data.available()
# CI installs the Debian packages (.ci/run): there a missing one is a failure, not a skip.
if REASON and os.environ.get("CI") != "true":
    pytest.skip(REASON, allow_module_level=True)

MODEL = Path(data.__file__).with_name("sound_cnn.onnx")


def test_clips_are_deterministic_and_independent_of_the_count():
    assert REASON is None, REASON
    few = data.make_clips(3, seed=11, split="test")
    more = data.make_clips(5, seed=11, split="test")
    np.testing.assert_array_equal(few.waveforms, more.waveforms[:3])
    np.testing.assert_array_equal(few.intervals, more.intervals[:3])
    assert few.sources == more.sources[:3]
    assert few.waveforms.shape == (3, int(data.CLIP_SECONDS * data.SAMPLE_RATE))


def test_the_interval_is_where_the_event_is():
    clips = data.make_clips(24, seed=12, split="train")
    rate = data.SAMPLE_RATE
    for clip, (start, end) in zip(clips.waveforms, clips.intervals):
        lo, hi = int(round(start * rate)), int(round(end * rate))
        assert start >= data.MIN_PAD_SECONDS - 1e-9 and end <= data.CLIP_SECONDS - data.MIN_PAD_SECONDS + 1e-9
        inside, outside = np.mean(clip[lo:hi] ** 2), np.mean(np.concatenate([clip[:lo], clip[hi:]]) ** 2)
        # Event + noise over noise alone: 10 ** (SNR / 10) + 1 = 11 for 10 dB, up to the noise's spread.
        assert 6.0 < inside / outside < 20.0, (inside / outside, start, end)


def test_train_and_test_share_no_recording_voice_or_word():
    for cls, names in data.SOURCES.items():
        test = {n for n in names if data.split_of(n, cls) == "test"}
        assert test and test != set(names), cls
    assert not set(data.SPEECH_VOICES["train"]) & set(data.SPEECH_VOICES["test"])
    assert not set(data.SPEECH_WORDS["train"]) & set(data.SPEECH_WORDS["test"])
    train_sources = set(data.make_clips(40, seed=13, split="train").sources)
    test_sources = set(data.make_clips(40, seed=13, split="test").sources)
    assert not train_sources & test_sources


def test_committed_model_classifies_held_out_clips():
    from blackbox_adapters import OnnxWaveformBlackBox

    bb = OnnxWaveformBlackBox(MODEL, sample_rate=data.SAMPLE_RATE, intra_op_threads=2)
    assert bb.num_classes == len(data.CLASSES)
    clips = data.make_clips(160, seed=99, split="test")
    accuracy = np.mean(bb(clips.waveforms).argmax(axis=1) == clips.labels)
    assert accuracy >= 0.85, accuracy
