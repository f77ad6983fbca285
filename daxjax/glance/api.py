"""`daxjax.glance.fit` and `GlanceModel`: the GLANCE-inspired explainer's public face.

    model = daxjax.glance.fit(bb, images, context, config)   # surrogate + global causal graph
    model.graph                 # CausalGraph over concepts, free latents and f's log-odds
    ex = model.explain(images)  # ex.importances [B, concepts], ex.counterfactuals, ...

bb is any black box (probabilities [n, K] from images [n, H, W, C] in [0, 1]); it is only queried.
context holds the observed concept features of the training images (e.g. `morphometrics`), one
column per `config.concept_names`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from daxjax.glance import discovery
from daxjax.glance.local import LocalExplanation, code_jitter, explain_codes, interventions
from daxjax.glance.morphosynth import CONCEPTS
from daxjax.glance.surrogate import (Encoder, Generator, Surrogate, SurrogateConfig, logits_from_probabilities,
                                     train_surrogate)
from daxjax.inputs import InputError, as_float_images

OUTPUT_NODE = "logit"
IMAGE_SIZE = 32


@dataclasses.dataclass(frozen=True)
class GlanceConfig:
    """What `fit` builds (every field has a default).

    Attributes:
        concept_names: names of the context columns, in order; they become the aligned codes.
        target_class: the class whose log-odds f's output node is.
        surrogate: encoder / generator training (`SurrogateConfig`; AE mode by default).
        discovery: NOTEARS settings (`NotearsConfig`).
        backend: "notears" (default, in-house) or causal-learn's "pc" / "ges" (cross-check; needs
            ``pip install causal-learn``; undirected edges then carry no effect).
        shift: local intervention size in sd of the concept.
        support: share of the training codes left out at each end of the range that interventions
            stay inside (`daxjax.glance.local`): a few extreme codes are not taken as a region
            where G was taught.
        smoothing_pairs, smoothing_sd: local effects are averaged over the image's code and
            `smoothing_pairs` antithetic pairs of codes around it, offset by `smoothing_sd` times
            each coordinate's spread (`daxjax.glance.local.code_jitter`); 0 pairs: the code alone.
        query_batch: images per black-box call.
    """

    concept_names: tuple[str, ...] = CONCEPTS
    target_class: int = 1
    surrogate: SurrogateConfig = SurrogateConfig()
    discovery: discovery.NotearsConfig = discovery.NotearsConfig()
    backend: str = "notears"
    shift: float = 1.0
    support: float = 0.005
    smoothing_pairs: int = 4
    smoothing_sd: float = 0.5
    query_batch: int = 512


def _rows(mask: np.ndarray, limit: int = 8) -> str:
    idx = np.flatnonzero(mask)
    return ", ".join(map(str, idx[:limit])) + (f", ... ({idx.size} in all)" if idx.size > limit else "")


def check_images(images, bb=None, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """float32 [B, 32, 32, C] in [0, 1], or InputError saying what is wrong.

    bb: the black box; when it declares its input size (ONNX models do), the images must match.
    shape: (H, W, C) the images must have (a fitted model's training images).
    """
    x = as_float_images(images)
    got = x.shape[1:]
    if bb is not None and getattr(bb, "input_shape", None) is not None:
        dims = tuple(bb.input_shape)
        layout = getattr(bb, "layout", "NHWC")
        want = (dims[2], dims[3], dims[1]) if layout == "NCHW" else tuple(dims[1:4])
        if any(w is not None and w != g for w, g in zip(want, got)):
            fmt = "x".join("?" if w is None else str(w) for w in want)
            raise InputError(f"images are {got[0]}x{got[1]}x{got[2]} (H x W x C) but the black box expects "
                             f"{fmt}")
    if shape is not None and got != tuple(shape):
        raise InputError(f"images are {got[0]}x{got[1]}x{got[2]} (H x W x C) but the model was fitted on "
                         f"{shape[0]}x{shape[1]}x{shape[2]}")
    if got[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        raise InputError(f"GLANCE-lite's generator draws {IMAGE_SIZE}x{IMAGE_SIZE} images; got "
                         f"{got[0]}x{got[1]} (resize them first)")
    return x


def check_context(context, n: int, names: tuple[str, ...]) -> np.ndarray:
    """float64 [n, len(names)] context features, or InputError naming the bad rows / columns."""
    c = np.asarray(context)
    if c.ndim != 2:
        raise InputError(f"context must be [n_images, n_concepts] = [{n}, {len(names)}]; got shape {c.shape}")
    if c.shape[0] != n:
        raise InputError(f"context has {c.shape[0]} rows but there are {n} images (one row per image)")
    if c.shape[1] != len(names):
        raise InputError(f"context has {c.shape[1]} columns but config.concept_names names {len(names)}: "
                         f"{names}")
    if not np.issubdtype(c.dtype, np.number):
        raise InputError(f"context must be numeric; got dtype {c.dtype}")
    c = c.astype(np.float64)
    bad = ~np.isfinite(c)
    if bad.any():
        cols = [names[j] for j in np.flatnonzero(bad.any(axis=0))]
        raise InputError(f"context has NaN or inf in row(s) {_rows(bad.any(axis=1))} (column(s) {cols})")
    constant = c.std(axis=0) == 0
    if constant.any():
        raise InputError(f"context column(s) {[names[j] for j in np.flatnonzero(constant)]} are constant")
    return c


def _check_features(features, n: int, dim: int) -> np.ndarray | None:
    """f's penultimate features float32 [n, dim] (None when dim is 0), or InputError."""
    if dim == 0:
        if features is not None:
            raise InputError("features were given but the model was fitted without f's features")
        return None
    if features is None:
        raise InputError(f"the model was fitted with f's penultimate features: pass features [n, {dim}]")
    f = np.asarray(features, np.float32)
    if f.shape != (n, dim):
        raise InputError(f"features must have shape [{n}, {dim}] (one row per image); got {f.shape}")
    bad = ~np.isfinite(f).all(axis=1)
    if bad.any():
        raise InputError(f"features have NaN or inf in row(s) {_rows(bad)}")
    return f


def _log_odds(bb, images: np.ndarray, target: int, batch: int) -> np.ndarray:
    probs = np.concatenate([np.asarray(bb(images[i:i + batch])) for i in range(0, len(images), batch)])
    if probs.ndim != 2 or probs.shape[0] != len(images):
        raise ValueError(f"the black box answered shape {probs.shape} for {len(images)} images; expected [n, K]")
    if not 0 <= target < probs.shape[1]:
        raise InputError(f"target_class {target} is outside [0, {probs.shape[1]}) (the black box's classes)")
    return logits_from_probabilities(probs, target)


@dataclasses.dataclass
class GlanceModel:
    """A fitted GLANCE-lite explainer of one black box.

    Attributes:
        graph: the global explanation, a `CausalGraph` over the concepts (aligned codes), the free
            latents and f's log-odds (OUTPUT_NODE).
        surrogate: the trained encoder / generator.
        config: the `GlanceConfig` used.
        context_mean, context_std: standardisation of the context features [k].
        image_shape: (H, W, C) of the training images.
        seconds: wall time of each fitting phase.
        code_range: float32 [2, latent_dim], the `support` and 1 - `support` quantiles of the
            training images' codes: the region where interventions are drawn.
        feature_dim: F when f's penultimate features were given to `fit` (then `encode` and
            `explain` need them too), else 0.
    """

    bb: object
    surrogate: Surrogate
    graph: discovery.CausalGraph
    config: GlanceConfig
    context_mean: np.ndarray
    context_std: np.ndarray
    image_shape: tuple[int, int, int]
    seconds: dict
    code_range: np.ndarray
    feature_dim: int = 0

    @property
    def concepts(self) -> tuple[str, ...]:
        return tuple(self.config.concept_names)

    @property
    def latent_names(self) -> tuple[str, ...]:
        return self.graph.names[:-1]

    @property
    def concept_graph(self) -> discovery.CausalGraph:
        """The graph restricted to the concepts and f's output."""
        return self.graph.restrict(self.concepts + (OUTPUT_NODE,))

    def encode(self, images, features=None) -> np.ndarray:
        """Codes [B, latent_dim] of images (validated)."""
        x = check_images(images, self.bb, self.image_shape)
        return self.surrogate.encode(x, _check_features(features, len(x), self.feature_dim))

    def concept_values(self, images, features=None) -> np.ndarray:
        """The aligned codes of images, in the context features' own units [B, k]."""
        k = len(self.concepts)
        return self.encode(images, features)[:, :k] * self.context_std + self.context_mean

    def log_odds(self, images: np.ndarray) -> np.ndarray:
        """f's log-odds of the target class [n] (queries)."""
        return _log_odds(self.bb, images, self.config.target_class, self.config.query_batch)

    def explain(self, images, features=None) -> LocalExplanation:
        """Local concept explanations of images [B, H, W, C] (see `daxjax.glance.local`);
        features [B, F] only for a model fitted with f's penultimate features.

        An image's explanation depends only on the image and the fitted model.
        """
        x = check_images(images, self.bb, self.image_shape)
        codes = self.surrogate.encode(x, _check_features(features, len(x), self.feature_dim))
        plan = interventions(self.graph, self.concepts, self.latent_names, self.config.shift)
        jitter = code_jitter(self.config.smoothing_pairs, self.config.smoothing_sd, self.graph.std[:codes.shape[1]])
        return explain_codes(codes, plan, self.code_range, self.surrogate.decode, self.log_odds, self.log_odds(x),
                             jitter)

    # ------------------------------------------------------------ persistence

    def save(self, path) -> Path:
        """Writes the encoder, generator, graph and configuration to one .npz file."""
        path = Path(path)
        arrays = {}
        for name, module in (("encoder", self.surrogate.encoder), ("generator", self.surrogate.generator)):
            flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(module, nnx.Param)))[0]
            for key, value in flat:
                arrays[name + "/" + "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key)] = \
                    np.asarray(value)
        g = self.graph
        arrays.update({"graph/adjacency": g.adjacency, "graph/weights": g.weights, "graph/mean": g.mean,
                       "graph/std": g.std, "context_mean": self.context_mean, "context_std": self.context_std,
                       "code_range": self.code_range})
        meta = {"config": dataclasses.asdict(self.config), "graph_names": list(g.names), "graph_method": g.method,
                "image_shape": list(self.image_shape), "seconds": self.seconds,
                "feature_dim": self.feature_dim}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path


def _config_from_dict(stored: dict, default=GlanceConfig(), where: str = "config"):
    """`default` (a config dataclass) with the fields `stored` holds, nested configs likewise.

    Fields `stored` lacks keep their defaults, so models saved before a field existed still load;
    fields `default` lacks are an error naming them rather than being dropped.
    """
    unknown = sorted(set(stored) - {f.name for f in dataclasses.fields(default)})
    if unknown:
        raise ValueError(f"saved model's {where} has fields this daxjax does not know: {unknown} "
                         "(saved by a newer version?)")
    changes = {}
    for name, value in stored.items():
        current = getattr(default, name)
        if dataclasses.is_dataclass(current):
            value = _config_from_dict(value, current, f"{where}.{name}")
        elif isinstance(current, tuple):
            value = tuple(value)  # JSON stores tuples as lists
        changes[name] = value
    return dataclasses.replace(default, **changes)


def load(path, bb) -> GlanceModel:
    """A model written by `GlanceModel.save`, explaining black box bb."""
    from blackbox_adapters import as_blackbox

    bb = as_blackbox(bb)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    config = _config_from_dict(meta["config"])
    shape = tuple(meta["image_shape"])
    rngs = nnx.Rngs(0)
    modules = {"encoder": Encoder(config.surrogate, rngs, shape[2], meta["feature_dim"]),
               "generator": Generator(config.surrogate, rngs, shape[2])}
    for name, module in modules.items():
        state = nnx.state(module, nnx.Param)
        pure = nnx.to_pure_dict(state)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(pure)
        values = []
        for key, old in leaves:
            stored = arrays[name + "/" + "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key)]
            if stored.shape != old.shape:
                raise ValueError(f"{path}: {name} parameter {key} has shape {stored.shape}, expected {old.shape}")
            values.append(stored)
        nnx.replace_by_pure_dict(state, jax.tree_util.tree_unflatten(treedef, values))
        nnx.update(module, state)
    graph = discovery.CausalGraph(tuple(meta["graph_names"]), arrays["graph/adjacency"], arrays["graph/weights"],
                                  arrays["graph/mean"], arrays["graph/std"], meta["graph_method"])
    surrogate = Surrogate(modules["encoder"], modules["generator"], None, config.surrogate, {}, {})
    return GlanceModel(bb, surrogate, graph, config, arrays["context_mean"], arrays["context_std"], shape,
                       meta["seconds"], arrays["code_range"], meta["feature_dim"])


def fit(bb, images, context, config: GlanceConfig | None = None, features=None) -> GlanceModel:
    """Fits the GLANCE-lite explainer of black box bb.

    Args:
        bb: a black box (``bb(x [n, H, W, C]) -> probabilities [n, K]``); only queried.
        images: float32 [N, 32, 32, C] in [0, 1] or uint8: the training images.
        context: [N, k] observed concept features of those images (one column per
            config.concept_names), e.g. `morphometrics.measure_batch` columns.
        config: `GlanceConfig` (None: defaults).
        features: optional [N, F] penultimate features of f, when the user can provide them
            (handed to the encoder; then `explain` is not available without them, so the default
            is query-only).

    Returns a `GlanceModel`. Raises InputError for images of the wrong size (for the generator or
    for the black box), context with NaN / the wrong number of rows or columns, or a bad target.
    """
    from blackbox_adapters import as_blackbox

    config = config or GlanceConfig()
    if config.backend not in ("notears", "pc", "ges"):
        raise InputError(f"backend must be 'notears', 'pc' or 'ges'; got {config.backend!r}")
    bb = as_blackbox(bb)
    x = check_images(images, bb)
    names = tuple(config.concept_names)
    c = check_context(context, len(x), names)
    if features is not None:
        features = _check_features(features, len(x), np.shape(features)[-1] if np.ndim(features) == 2 else -1)
    seconds = {}
    t0 = time.perf_counter()
    logits = _log_odds(bb, x, config.target_class, config.query_batch)
    seconds["queries"] = time.perf_counter() - t0
    mean, std = c.mean(axis=0), c.std(axis=0)
    surrogate = train_surrogate(x, ((c - mean) / std).astype(np.float32), logits.astype(np.float32),
                                config.surrogate, features,
                                query=lambda imgs: _log_odds(bb, imgs, config.target_class, config.query_batch))
    seconds.update(surrogate.seconds)
    t0 = time.perf_counter()
    codes = surrogate.encode(x, features)
    free = tuple(f"latent_{j}" for j in range(config.surrogate.latent_dim - len(names)))
    nodes = names + free + (OUTPUT_NODE,)
    data = np.c_[codes, logits]
    if config.backend == "notears":
        graph = discovery.notears(data, nodes, sinks=(OUTPUT_NODE,), config=config.discovery)
    else:
        graph = discovery.causal_learn_graph(data, nodes, method=config.backend, sinks=(OUTPUT_NODE,))
    seconds["discovery"] = time.perf_counter() - t0
    code_range = np.quantile(codes, [config.support, 1.0 - config.support], axis=0).astype(np.float32)
    return GlanceModel(bb, surrogate, graph, config, mean, std, x.shape[1:], seconds, code_range,
                       0 if features is None else features.shape[1])
