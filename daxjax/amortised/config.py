"""`AmortisedConfig`: how the amortised DAX explainer is fitted, as frozen data grouped by concern.

    AmortisedConfig(teacher=Teacher(queries_per_image=250), training=Training(steps=3000))

Every group is its own frozen dataclass with documented defaults; `AmortisedConfig.to_dict` /
`from_dict` give the plain-JSON form saved beside the parameters (`AmortisedExplainer.save`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from daxjax._checks import Replace, check_fields

__all__ = ["AmortisedConfig", "Nets", "Refine", "Teacher", "Training"]


@dataclasses.dataclass(frozen=True)
class Teacher(Replace):
    """The per-image explainer whose maps the mask network learns: DAX's default (`DAXConfig`) with
    the image-mean fill (`dax_config`) at `queries_per_image` queries an image, each fitted image
    explained for its top-1 class.

    queries_per_image: black-box queries DAX spends on each fitted image (its N; the first is the
      unperturbed image). 250 is where DAX's maps on the Fashion scenes equal those at N = 2000
      (IoU 0.724 both; benchmarks/RESULTS.md, "Amortised DAX: quality against queries ...").
    """

    queries_per_image: int = 250

    def __post_init__(self):
        check_fields(self, positive=("queries_per_image",))
        if self.queries_per_image < 16:
            raise ValueError(f"Teacher.queries_per_image must be >= 16, got {self.queries_per_image!r}")

    def dax_config(self, queries: int | None = None):
        """The `DAXConfig` of the teacher (at `queries` instead of queries_per_image when given).

        Its fill stays the image mean, the one the amortised results were measured with: DAX's default
        fill="auto" probes two fills with 64 extra queries, too many for a teacher of a few hundred."""
        from daxjax.methods.dax.config import DAXConfig

        return DAXConfig(num_samples=int(queries or self.queries_per_image), fill="image_mean")


@dataclasses.dataclass(frozen=True)
class Nets(Replace):
    """The mask network (`daxjax.amortised.nets.MapNet`): image -> a map logit per pixel.

    resolution: side of the square image it reads (the image is resized to it; its map is resized
      back); a multiple of 4.
    channels: widths of its three levels (full, 1/2 and 1/4 of the resolution); the decoder mirrors
      them (a U-Net of two down- and two up-sampling steps).
    """

    resolution: int = 64
    channels: tuple[int, int, int] = (16, 32, 64)

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        check_fields(self, positive=("resolution",))
        if self.resolution % 4:
            raise ValueError(f"Nets.resolution must be a multiple of 4, got {self.resolution!r}")
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"Nets.channels must be three widths >= 1, got {self.channels!r}")


@dataclasses.dataclass(frozen=True)
class Training(Replace):
    """Adam on the mask network: binary cross-entropy of its map against the teacher's [0, 1] map.

    steps: Adam steps; images_per_step: a step's minibatch of fitted images.
    learning_rate: Adam's rate.
    flips: mirror each drawn image and its teacher map left-right with probability 1/2 (the maps
      of a mirrored image are the mirrored maps, for any black box that is mirror-symmetric in
      what it looks at).
    validation_fraction: share of the fitted images held out of training; at `validations`
      checkpoints the parameters with the lowest loss on them are kept.
    """

    steps: int = 3000
    images_per_step: int = 16
    learning_rate: float = 2e-3
    flips: bool = True
    validation_fraction: float = 0.1
    validations: int = 6

    def __post_init__(self):
        check_fields(self, positive=("steps", "images_per_step", "validations"),
                     greater_than_zero=("learning_rate",))
        if not 0.0 < self.validation_fraction < 0.5:
            raise ValueError(f"Training.validation_fraction must be in (0, 0.5), got {self.validation_fraction!r}")


@dataclasses.dataclass(frozen=True)
class Refine(Replace):
    """Per-image verification with a small query budget (`AmortisedExplainer.refine`).

    The teacher (DAX) explains the image with K queries. Where DAX trusts its own map (held-out fit,
    a live mask) and that map disagrees with the amortised one (Pearson correlation of the two
    maps below `agreement_floor`), DAX's map replaces it: the queries contradict the amortised map.
    Elsewhere the amortised map is kept, confirmed by the queries where they agree. Why not always
    mix the two: the network, fitted on many images, smooths out the noise of each teacher map, so
    a map from K <= the teacher's queries is often worse than the amortised one where both agree
    (measured on the planted scenes of tests/test_amortised.py: mixing them made 8 of 12 maps worse).

    agreement_floor: the correlation below which a trusted DAX map replaces the amortised map.
    """

    agreement_floor: float = 0.3

    def __post_init__(self):
        check_fields(self)
        if not -1.0 <= self.agreement_floor <= 1.0:
            raise ValueError(f"Refine.agreement_floor must be in [-1, 1], got {self.agreement_floor!r}")


_GROUPS = {"teacher": Teacher, "nets": Nets, "training": Training, "refine": Refine}


@dataclasses.dataclass(frozen=True)
class AmortisedConfig(Replace):
    """The whole amortised explainer: one group per concern (see each group's docstring)."""

    teacher: Teacher = Teacher()
    nets: Nets = Nets()
    training: Training = Training()
    refine: Refine = Refine()

    def __post_init__(self):
        for name, kind in _GROUPS.items():
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"AmortisedConfig.{name} must be a {kind.__name__}, "
                                f"got {type(getattr(self, name)).__name__}")

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
