"""`AmortisedConfig`: how the amortised DAX explainer is fitted, as frozen data grouped by concern.

    AmortisedConfig(sampling=Sampling(cells=8, queries_per_image=500), training=Training(steps=2000))

Every group is its own frozen dataclass with documented defaults; `AmortisedConfig.to_dict` /
`from_dict` give the plain-JSON form saved beside the parameters (`AmortisedExplainer.save`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from daxjax._checks import Replace, check_fields
from daxjax.perturbation.fills import FillMethod

__all__ = ["AmortisedConfig", "Loss", "Nets", "Refine", "Sampling", "Training"]


@dataclasses.dataclass(frozen=True)
class Sampling(Replace):
    """What the black box is asked about each fitted image.

    cells: the keep-vectors switch the cells of a cells x cells grid (S = cells^2 segments, the same
      for every image, so one network reads every image's perturbations; `daxjax.perturbation`'s
      "grid" segmentation).
    queries_per_image: perturbations of each fitted image sent to the black box (its first one is the
      unperturbed image, `sampling.keep_vectors`).
    keep_prob: probability that a cell is kept in a perturbation.
    fill: what a switched-off cell shows (`daxjax.perturbation.fills`; DAX's default "image_mean").
    target: what the student fits: "logit" (the target class's log p - log(1 - p), clipped as DAX's
      `student_targets`) or "probability".
    kernel_width: LIME's proximity kernel on the keep-vectors (as DAX; `sampling.proximity_weights`).
    """

    cells: int = 8
    queries_per_image: int = 400
    keep_prob: float = 0.5
    fill: FillMethod = "image_mean"
    target: Literal["logit", "probability"] = "logit"
    kernel_width: float = 0.25

    def __post_init__(self):
        check_fields(self, positive=("cells", "queries_per_image"), greater_than_zero=("kernel_width",),
                     open_unit=("keep_prob",))
        if self.cells < 2:
            raise ValueError(f"Sampling.cells must be >= 2, got {self.cells!r}")
        if self.queries_per_image < 8:
            raise ValueError(f"Sampling.queries_per_image must be >= 8, got {self.queries_per_image!r}")


@dataclasses.dataclass(frozen=True)
class Nets(Replace):
    """The image encoder and the two heads (`daxjax.amortised.nets`).

    resolution: side of the square image the encoder reads (the image is resized to it); a multiple
      of 4 * cells.
    channels: widths of the encoder's three 3x3 convolutions (the last two stride 2, then average
      pooling down to the cells x cells grid).
    features: width F of each cell's feature vector.
    hidden: hidden width of the student's interaction MLP.
    """

    resolution: int = 64
    channels: tuple[int, int, int] = (16, 32, 32)
    features: int = 32
    hidden: int = 64

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        check_fields(self, positive=("resolution", "features", "hidden"))
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"Nets.channels must be three widths >= 1, got {self.channels!r}")


@dataclasses.dataclass(frozen=True)
class Loss(Replace):
    """DAX-V2, normalised as DAX's default (`daxjax.methods.dax.losses.loss_v2`), per image.

    lambda_q: weight of the bounded complement term Q (the student's error on what the mask removes).
    lambda_area: weight of the mask's mean, in shares of the image's target variance.
    gate_temperature: hard-concrete gates' temperature (`sampling.hard_concrete_gates`).
    """

    lambda_q: float = 0.5
    lambda_area: float = 0.5
    gate_temperature: float = 2.0 / 3.0

    def __post_init__(self):
        check_fields(self, greater_than_zero=("gate_temperature",))
        if self.lambda_q < 0 or self.lambda_area < 0:
            raise ValueError(f"Loss.lambda_q and lambda_area must be >= 0, got {self.lambda_q!r}, "
                             f"{self.lambda_area!r}")


@dataclasses.dataclass(frozen=True)
class Training(Replace):
    """Adam on the shared networks, over minibatches of images x their perturbations.

    steps: Adam steps. images_per_step, samples_per_image: a step's minibatch.
    learning_rate: encoder and student; mask_learning_rate: the mask head.
    student_warmup: share of the steps in which the mask is held at its start (0.5 everywhere) and
      only the student learns (DAX's `student_warmup`).
    validation_fraction: share of each image's perturbations held out; at `validations` checkpoints
      the parameters with the lowest held-out loss are kept.
    """

    steps: int = 1500
    images_per_step: int = 16
    samples_per_image: int = 64
    learning_rate: float = 3e-3
    mask_learning_rate: float = 1e-2
    student_warmup: float = 0.25
    validation_fraction: float = 0.1
    validations: int = 6

    def __post_init__(self):
        check_fields(self, positive=("steps", "images_per_step", "samples_per_image", "validations"),
                     greater_than_zero=("learning_rate", "mask_learning_rate"))
        if not 0.0 <= self.student_warmup < 1.0:
            raise ValueError(f"Training.student_warmup must be in [0, 1), got {self.student_warmup!r}")
        if not 0.0 < self.validation_fraction < 0.5:
            raise ValueError(f"Training.validation_fraction must be in (0, 0.5), got {self.validation_fraction!r}")


@dataclasses.dataclass(frozen=True)
class Refine(Replace):
    """Per-image refinement with a small query budget (`AmortisedExplainer.refine`).

    steps: Adam steps on each image's own copy of the student head and mask logits.
    anchor: weight of the squared distance of those copies to the amortised ones (a prior; few
      queries cannot pin a whole head down).
    learning_rate / mask_learning_rate: their Adam rates.
    validation_fraction: share of the K queries held out to judge the amortised and the refined
      map (`heldout_fit`); the refined map is kept only where it fits them at least as well.
    """

    steps: int = 200
    anchor: float = 1.0
    learning_rate: float = 3e-3
    mask_learning_rate: float = 3e-2
    validation_fraction: float = 0.25

    def __post_init__(self):
        check_fields(self, positive=("steps",), greater_than_zero=("learning_rate", "mask_learning_rate"))
        if self.anchor < 0:
            raise ValueError(f"Refine.anchor must be >= 0, got {self.anchor!r}")
        if not 0.0 < self.validation_fraction < 0.5:
            raise ValueError(f"Refine.validation_fraction must be in (0, 0.5), got {self.validation_fraction!r}")


_GROUPS = {"sampling": Sampling, "nets": Nets, "loss": Loss, "training": Training, "refine": Refine}


@dataclasses.dataclass(frozen=True)
class AmortisedConfig(Replace):
    """The whole amortised explainer: one group per concern (see each group's docstring)."""

    sampling: Sampling = Sampling()
    nets: Nets = Nets()
    loss: Loss = Loss()
    training: Training = Training()
    refine: Refine = Refine()

    def __post_init__(self):
        for name, kind in _GROUPS.items():
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"AmortisedConfig.{name} must be a {kind.__name__}, "
                                f"got {type(getattr(self, name)).__name__}")
        if self.nets.resolution % (4 * self.sampling.cells):
            raise ValueError(f"AmortisedConfig: nets.resolution={self.nets.resolution} must be a multiple of "
                             f"4 * sampling.cells = {4 * self.sampling.cells}")
        validation = int(self.training.validation_fraction * self.sampling.queries_per_image)
        if validation < 1 or self.sampling.queries_per_image - validation < 2:
            raise ValueError("AmortisedConfig: sampling.queries_per_image is too small for "
                             f"training.validation_fraction={self.training.validation_fraction}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able {group: {field: value}}."""
        return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(getattr(self, name)).items()}
                for name in _GROUPS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AmortisedConfig":
        """The inverse of `to_dict`; unknown groups or fields are a ValueError naming them."""
        unknown = set(data) - set(_GROUPS)
        if unknown:
            raise ValueError(f"AmortisedConfig.from_dict: unknown group(s) {sorted(unknown)}")
        groups = {}
        for name, values in data.items():
            kind = _GROUPS[name]
            fields = {f.name for f in dataclasses.fields(kind)}
            extra = set(values) - fields
            if extra:
                raise ValueError(f"AmortisedConfig.from_dict: unknown field(s) {sorted(extra)} in {name!r}")
            groups[name] = kind(**values)
        return cls(**groups)
