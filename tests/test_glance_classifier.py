"""The committed MorphoSynth classifiers (daxjax/glance/models) and their training code."""

import numpy as np
import pytest

from daxjax.glance import classifier as cl
from daxjax.glance import morphosynth as ms

FRESH_SEED = 777  # neither the training (101) nor the model card's test seed (102)


@pytest.fixture(scope="module")
def fresh():
    return ms.sample(1000, FRESH_SEED)


def logits_of(bb, images):
    p = bb(images).astype(np.float64)
    return np.log(p[:, 1]) - np.log(p[:, 0])


@pytest.mark.parametrize("task", sorted(cl.TASKS))
def test_committed_classifier_accuracy(task, fresh):
    bb = cl.classifier_blackbox(task)
    assert bb.num_classes == 2
    accuracy = np.mean((logits_of(bb, fresh.images) > 0) == cl.TASKS[task](fresh.concepts))
    assert accuracy >= 0.95, f"{task}: {accuracy:.4f}"


@pytest.mark.parametrize("task", sorted(cl.TASKS))
def test_classifier_follows_its_planted_causes(task, fresh):
    """Shifting a cause by 1 sd moves the logit far more than shifting a correlate (exact
    counterfactuals, direct effects): the ground truth the explainer is scored against holds."""
    bb = cl.classifier_blackbox(task)
    base = ms.Sample(fresh.images[:200], fresh.concepts[:200], fresh.exogenous.take(slice(0, 200)))
    y0 = logits_of(bb, base.images)
    effect = {c: np.mean(np.abs(logits_of(bb, ms.intervene(base, c, 1.0, mode="direct").images) - y0))
              for c in ms.CONCEPTS}
    causes = cl.CAUSES[task]
    correlates = [c for c in ms.CONCEPTS if c not in causes]
    assert min(effect[c] for c in causes) > 3 * max(effect[c] for c in correlates), effect


def test_training_is_deterministic():
    train = ms.sample(128, 5, decorrelate=("intensity", "width"))
    test = ms.sample(64, 6)
    config = cl.TrainConfig(steps=20, batch=32)
    first, report = cl.train("thickness_slant", config, train, test)
    second, _ = cl.train("thickness_slant", config, train, test)
    np.testing.assert_array_equal(cl.predict_logits(first, test.images), cl.predict_logits(second, test.images))
    assert 0.0 <= report["test_accuracy"] <= 1.0


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        cl.model_path("colour")
