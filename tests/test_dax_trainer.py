"""The DAX trainer (`daxjax.methods.dax.train`) on its own: a step, its state, its checkpoints.

That rows trained one at a time give the maps and diagnostics of all rows at once is checked end to
end in tests/test_execution.py (`rows_per_step`)."""

import jax
import jax.numpy as jnp
import numpy as np

from daxjax import DAXConfig
from daxjax.methods.dax import engine
from daxjax.perturbation.segments import SegmentedImages
from daxjax.methods.dax.train import TrainState, compiled_trainer, draw_batch

SEGMENTS = 8
CONFIG = DAXConfig(num_samples=64, steps=12, minibatch_size=16, resolution=16, mask_cells=4, student_hidden=8,
                   segmentation="grid", validations=2, student_warmup=0.0)


def problem(config=CONFIG, images=2):
    """A tiny group whose answers are a logistic function of segments 0 and 3: (TrainData, init keys, TrainKeys)."""
    rng = np.random.default_rng(0)
    side = 16
    x = jnp.asarray(rng.uniform(size=(images, side, side, 3)), jnp.float32)
    segments = jnp.asarray(np.tile((np.arange(side)[:, None] // 8) * 4 + np.arange(side)[None] // 4, (images, 1, 1)),
                           jnp.int32)
    z = jnp.asarray(rng.uniform(size=(images, config.num_samples, SEGMENTS)) < 0.5).at[:, 0].set(True)
    y = jax.nn.sigmoid(4.0 * (z[..., 0].astype(jnp.float32) + z[..., 3] - 1.0))
    _, keys = engine._keys(0, jnp.arange(images, dtype=jnp.uint32))
    group = SegmentedImages(x, segments, jnp.full_like(x, 0.5), jnp.full((images,), SEGMENTS, jnp.int32), SEGMENTS)
    data, init_keys, train_keys, _ = engine.prepare(group, z, y, keys, config)
    return data, init_keys, train_keys


def tree_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), a, b)))


def test_one_step_changes_both_nets_and_lowers_the_loss_on_its_batch():
    trainer = compiled_trainer(CONFIG, 3, SEGMENTS)
    data, init_keys, keys = problem()
    state = trainer.init(init_keys)
    batch, gate_keys = draw_batch(data, keys, state.step, CONFIG.minibatch)
    after, before_metrics = trainer.step(state, batch, gate_keys)
    _, after_metrics = trainer.step(after, batch, gate_keys)  # metrics are the loss before its step
    assert int(after.step) == 1
    assert not np.array_equal(after.params["mask"]["grid"][...], state.params["mask"]["grid"][...])
    assert not np.array_equal(after.params["student"]["linear"][...], state.params["student"]["linear"][...])
    assert np.all(np.asarray(after_metrics["loss"]) < np.asarray(before_metrics["loss"])), (before_metrics, after_metrics)


def test_run_is_step_repeated_on_the_drawn_batches():
    trainer = compiled_trainer(CONFIG, 3, SEGMENTS)
    data, init_keys, keys = problem()
    by_hand = trainer.init(init_keys)
    for _ in range(3):
        by_hand, _ = trainer.step(by_hand, *draw_batch(data, keys, by_hand.step, CONFIG.minibatch))
    looped = trainer.run(trainer.init(init_keys), data, keys, 3)
    assert int(looped.step) == 3
    for a, b in zip(jax.tree.leaves(looped.params), jax.tree.leaves(by_hand.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_the_state_round_trips_through_jax_tree_util():
    trainer = compiled_trainer(CONFIG, 3, SEGMENTS)
    _, init_keys, _ = problem()
    state = trainer.init(init_keys)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(rebuilt, TrainState) and tree_equal(rebuilt, state)
    assert isinstance(jax.jit(lambda s: s)(state), TrainState)
    assert state.best_loss.shape == (2,) and np.isinf(state.best_loss).all() and int(state.step) == 0
    assert tree_equal(state.best_params, state.params)


def test_end_epoch_keeps_each_rows_best_parameters():
    trainer = compiled_trainer(CONFIG, 3, SEGMENTS)
    data, init_keys, keys = problem()
    state = trainer.run(trainer.init(init_keys), data, keys, 4)
    state, val = trainer.end_epoch(state, data)
    np.testing.assert_array_equal(state.best_loss, val)
    assert tree_equal(state.best_params, state.params)
    # Row 0 already had a lower loss: it keeps its old best; row 1 takes the new parameters.
    later = trainer.run(state._replace(best_loss=jnp.asarray([-1.0, np.inf])), data, keys, 8)
    kept = jax.tree.map(jnp.copy, later.best_params)
    later, _ = trainer.end_epoch(later, data)
    for new, old, now in zip(jax.tree.leaves(later.best_params), jax.tree.leaves(kept), jax.tree.leaves(later.params)):
        np.testing.assert_array_equal(new[0], old[0])
        np.testing.assert_array_equal(new[1], now[1])
