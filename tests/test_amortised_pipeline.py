"""`explain_dataset(method="dax-amortised")` and `daxjax explain --method dax-amortised`: fit on a
share of a planted dataset, the explainer kept in the store, every image explained, resumed, reported."""

import hashlib
import json
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

import daxjax
from blackbox_adapters import bundled_model_path
from daxjax import amortised
from daxjax.cli import main
from daxjax.dataset.store import StoreError, StoreWarning
from daxjax.inputs import InputError
from planted import red_and_distractor_scene, red_fraction_box

# The smallest settings that still train (a teacher of 32 queries, 20 steps): the test is of the
# plumbing; tests/test_amortised.py judges the explainer's quality.
TINY = amortised.AmortisedConfig(
    teacher=amortised.Teacher(queries_per_image=32),
    nets=amortised.Nets(resolution=16, channels=(4, 8, 8)),
    training=amortised.Training(steps=20, images_per_step=4, validations=2))
COUNT, FIT = 10, 6
RUN = dict(method="dax-amortised", config=TINY, fit_images=FIT, batch_size=4, workers=0, progress=False)


def hash_order(ids):
    return sorted(ids, key=lambda i: hashlib.sha256(i.encode()).digest())


def poisoned_box(x):
    """red_fraction_box, but NaN for an image whose top-left pixel is pure green (it never is in a
    perturbation of another image: the fill is the image's mean)."""
    p = red_fraction_box(x)
    p[(x[:, 0, 0, 0] == 0.0) & (x[:, 0, 0, 1] == 1.0) & (x[:, 0, 0, 2] == 0.0)] = np.nan
    return p


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A folder of COUNT planted scenes: the first in the fit order is a corrupt file, the second
    one the black box cannot answer. Returns (folder, names, images uint8, corrupt, poisoned)."""
    folder = tmp_path_factory.mktemp("scenes")
    images = (np.stack([red_and_distractor_scene(s, 32)[0] for s in range(COUNT)]) * 255).astype(np.uint8)
    names = [f"img{i:03d}.png" for i in range(COUNT)]
    corrupt, poisoned = hash_order(names)[:2]
    images[names.index(poisoned), 0, 0] = (0, 255, 0)
    for name, image in zip(names, images):
        Image.fromarray(image).save(folder / name)
    (folder / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder, names, images, corrupt, poisoned


def test_amortised_dataset_run_fits_stores_explains_and_resumes(tmp_path, dataset):
    folder, names, images, corrupt, poisoned = dataset
    out = tmp_path / "out"
    summary = daxjax.explain_dataset(poisoned_box, folder, out, **RUN)
    assert (summary.explained, summary.errors) == (COUNT - 2, 2)

    # The fit set: the first FIT images in the SHA-256 order of their ids that could be read and answered.
    record = json.loads((out / "amortised.json").read_text())
    assert record["fit_ids"] == hash_order(names)[2:2 + FIT]
    assert set(record["skipped"]) == {corrupt, poisoned}
    assert "cannot be read" in record["skipped"][corrupt] and "black box" in record["skipped"][poisoned]
    assert record["sha256"] == hashlib.sha256((out / "amortised.npz").read_bytes()).hexdigest()

    # The store reads back as for every method; the skipped images were still tried, and are error rows.
    res = daxjax.load_results(out)
    good = [i for i, name in enumerate(names) if name not in (corrupt, poisoned)]
    assert res.ids == [names[i] for i in good] and set(res.errors) == {corrupt, poisoned}
    assert "NaN" in res.errors[poisoned] and res.complete and res.method == "dax-amortised"
    assert res.config == TINY and res.seed == 0 and res.maps.shape == (COUNT - 2, 32, 32)
    assert set(res.diagnostics) == {"mask_area", "mask_contrast", "in_fit_set"}
    np.testing.assert_array_equal(res.diagnostics["in_fit_set"], [name in record["fit_ids"] for name in res.ids])
    np.testing.assert_array_equal(res.targets, red_fraction_box(images[good] / 255.0).argmax(1))

    # The maps are the saved explainer's, and that explainer is `amortised.fit` on the fit set.
    explainer = amortised.load(out / "amortised.npz")
    np.testing.assert_array_equal(res.maps, explainer.explain(images[good]).maps)
    fit_rows = [names.index(i) for i in record["fit_ids"]]
    direct = amortised.fit(red_fraction_box, images[fit_rows], TINY, seed=0)
    for a, b in zip(*(jax_leaves(e) for e in (direct, explainer))):
        np.testing.assert_array_equal(a, b)

    # Resumed: the explainer is loaded, not fitted again, and nothing is recomputed.
    stamp = (out / "amortised.npz").stat().st_mtime_ns
    again = daxjax.explain_dataset(poisoned_box, folder, out, **RUN)
    assert (again.explained, again.skipped) == (0, COUNT) and (out / "amortised.npz").stat().st_mtime_ns == stamp

    # Another config, seed or fit share is refused, naming what differs.
    with pytest.raises(StoreError, match="training"):
        daxjax.explain_dataset(poisoned_box, folder, out, **{**RUN, "config": TINY.replace(
            training=TINY.training.replace(steps=21))})
    with pytest.raises(StoreError, match="seed"):
        daxjax.explain_dataset(poisoned_box, folder, out, seed=1, **RUN)
    with pytest.raises(StoreError, match="amortised.*fit_images"):
        daxjax.explain_dataset(poisoned_box, folder, out, **{**RUN, "fit_images": FIT + 1})

    # A fitted image whose content changed since: the stored maps came from another explainer.
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    Image.fromarray(255 - images[fit_rows[0]]).save(changed / record["fit_ids"][0])
    with pytest.raises(StoreError, match=f"{record['fit_ids'][0]}.*changed in the source"):
        daxjax.explain_dataset(poisoned_box, changed, out, **RUN)

    # Killed while fitting (no record yet, a half-written explainer): fitted again, never loaded.
    killed = tmp_path / "killed"
    shutil.copytree(out, killed)
    (killed / "amortised.json").unlink()
    (killed / "amortised.npz").write_bytes((out / "amortised.npz").read_bytes()[:100])
    daxjax.explain_dataset(poisoned_box, folder, killed, **RUN)
    refit = json.loads((killed / "amortised.json").read_text())
    assert refit["sha256"] == hashlib.sha256((killed / "amortised.npz").read_bytes()).hexdigest()
    assert refit["fit_ids"] == record["fit_ids"]
    for a, b in zip(jax_leaves(explainer), jax_leaves(amortised.load(killed / "amortised.npz"))):
        np.testing.assert_array_equal(a, b)   # the same explainer bit for bit (its report's timings differ)
    # A record whose explainer does not match its checksum: a warning, and fitted again.
    (killed / "amortised.npz").write_bytes(b"x" + (killed / "amortised.npz").read_bytes()[1:])
    with pytest.warns(StoreWarning, match="amortised.npz does not match its checksum"):
        daxjax.explain_dataset(poisoned_box, folder, killed, **RUN)
    for a, b in zip(jax_leaves(explainer), jax_leaves(amortised.load(killed / "amortised.npz"))):
        np.testing.assert_array_equal(a, b)

    # Refinement: K queries an image through `AmortisedExplainer.refine`, its diagnostics stored.
    refined = daxjax.explain_dataset(poisoned_box, folder, tmp_path / "refined", **{**RUN, "refine_queries": 16})
    res_refined = daxjax.load_results(tmp_path / "refined")
    assert refined.explained == COUNT - 2 and res_refined.ids == res.ids
    assert set(amortised.REFINE_DIAGNOSTICS) | {"answer_spread", "informative"} <= set(res_refined.diagnostics)
    expected = explainer.refine(red_fraction_box, images[good], queries_per_image=16, seed=0)
    np.testing.assert_allclose(res_refined.maps, expected.maps, atol=1e-6)
    np.testing.assert_array_equal(res_refined.diagnostics["trusted"].astype(bool), expected.trusted)
    # The store's flag also asks that the answers varied at all (`methods.base.FLAGS`).
    informative = res_refined.diagnostics["informative"].astype(bool)
    np.testing.assert_array_equal(res_refined.trusted, expected.trusted & informative)


def jax_leaves(explainer):
    import jax

    return [np.asarray(leaf) for leaf in jax.tree.leaves(explainer.params)]


def test_amortised_run_rejects_bad_input_naming_it(tmp_path, dataset):
    folder = dataset[0]
    cases = [({"targets": 1}, "top-1 class only"), ({"fit_images": 1}, "fit_images must be an integer >= 2"),
             ({"refine_queries": 3}, "refine_queries must be 0"), ({"config": daxjax.RISEConfig()}, "AmortisedConfig")]
    for extra, message in cases:
        with pytest.raises(InputError, match=message):
            daxjax.explain_dataset(red_fraction_box, folder, tmp_path / "o", **{**RUN, **extra})
    with pytest.raises(InputError, match="known length"):
        daxjax.explain_dataset(red_fraction_box, (np.zeros((8, 8, 3)) for _ in range(3)), tmp_path / "o", **RUN)
    with pytest.raises(InputError, match="options of method='dax-amortised'"):
        daxjax.explain_dataset(red_fraction_box, folder, tmp_path / "o", method="rise", fit_images=4)
    assert not (tmp_path / "o").exists()


def test_cli_explains_with_dax_amortised_and_reports(tmp_path, dataset, capsys):
    folder = dataset[0]
    toml = tmp_path / "run.toml"
    toml.write_text("workers = 0\nfit_images = 4\n[config.nets]\nresolution = 16\nchannels = [4, 8, 8]\n"
                    "[config.training]\nsteps = 20\nimages_per_step = 4\nvalidations = 2\n")
    out = tmp_path / "out"
    argv = ["explain", "--model", str(bundled_model_path("colour_nchw")), "--images", str(folder), "--out", str(out),
            "--method", "dax-amortised", "--config", str(toml), "--num-samples", "32", "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert f"{COUNT - 1} explained" in err and "amortised.npz" in err
    res = daxjax.load_results(out)
    assert res.config == TINY and len(json.loads((out / "amortised.json").read_text())["fit_ids"]) == 4
    assert main(["report", str(out), "--source", str(folder), "--out-dir", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "dax-amortised" in page and res.ids[0] in page
    # A flat config field for the grouped config is a one-line usage error naming it.
    toml.write_text("[config]\nsteps = 20\n")
    bad = [*argv[:argv.index("--config")], "--config", str(toml), "--out", str(tmp_path / "o2")]
    assert main(bad) == 2
    assert "['steps'] must sit in their group's table" in capsys.readouterr().err


FOUR_DEVICES = r'''
import json, sys
import jax, numpy as np
import daxjax
from daxjax import amortised
from planted import red_fraction_box
from test_amortised_pipeline import RUN, TINY
assert len(jax.devices()) == 4
source, out = sys.argv[1], sys.argv[2]
daxjax.explain_dataset(red_fraction_box, source, out, **{**RUN, "fit_images": 10})
stored = amortised.load(out + "/amortised.npz")
with np.load(source) as f:
    images = f["images"]
again = amortised.fit(red_fraction_box, images, TINY, seed=0)   # all 4 devices, as the run's fit
same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(stored.params), jax.tree.leaves(again.params)))
res = daxjax.load_results(out)
x = images[[int(i.rsplit("/", 1)[-1]) for i in res.ids]]
four, one = stored.explain(x).maps, stored.explain(x, devices=jax.devices()[:1]).maps
print(json.dumps({"same_explainer": same, "report": again.report, "stored_maps_are_four_devices":
                  bool(np.array_equal(res.maps, four)), "one_device_equals_four": bool(np.array_equal(one, four))}))
'''


def test_a_fit_over_four_devices_is_reproducible_and_its_maps_do_not_depend_on_the_device_count(tmp_path):
    """Four (forced host) devices: the run's fit and a direct fit give the same explainer bit for
    bit; the teacher's queries count the padding to a multiple of the device count; the saved
    explainer draws the stored maps on four devices and on one, bit for bit in that process (in
    another process, whose XLA is set up for one device, within the contract's 1e-5)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    images = (np.stack([red_and_distractor_scene(s, 32)[0] for s in range(COUNT)]) * 255).astype(np.uint8)
    np.savez(tmp_path / "scenes.npz", images=images)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)]),
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    done = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(tmp_path / "scenes.npz"), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["same_explainer"]
    assert result["report"]["devices"] == 4
    # 10 images: groups of 16 over 4 devices, the one group of 10 padded to 12 for the teacher.
    assert result["report"]["queries"] == COUNT + 12 * TINY.teacher.queries_per_image
    assert result["stored_maps_are_four_devices"] and result["one_device_equals_four"]
    res = daxjax.load_results(tmp_path / "out")
    here_maps = amortised.load(tmp_path / "out" / "amortised.npz").explain(
        images[[int(i.rsplit("/", 1)[-1]) for i in res.ids]]).maps
    np.testing.assert_allclose(res.maps, here_maps, atol=1e-5)
