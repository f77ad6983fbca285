"""Configuration of the DAX explainer as plain, frozen data.

Every field has a default; the presets reproduce the paper's variants. Where the paper is silent
(its equations were lost in extraction), values come from the authors' reference code and say
so below.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar, Literal, Mapping

from daxjax._checks import Replace, check_fields
from daxjax.device.execution import MovedExecutionFields, warn_moved_fields
from daxjax.perturbation.fills import DAXFill, FillMethod
from daxjax.perturbation.segmentation import SegmentationMethod, Segmenter, check_segmenter

__all__ = ["DAXConfig", "FillMethod", "MaskInput", "SegmentationMethod", "Variant"]

Variant = Literal["v1", "v2"]
MaskInput = Literal["original", "perturbed"]


@dataclasses.dataclass(frozen=True)
class DAXConfig(Replace, MovedExecutionFields):
    """How DAX explains one image; the same for every image of a call.

    The default is DAX engineered for real models: a *segment student* fitting the black box's
    *logits* through *sampled gates* opened by a mask grid, 1000 Adam steps. The paper's design (a
    CNN student on the masked pixels, probabilities, a multiplicative mask) is `student="image"` and
    the presets `paper_v1/v2/v3`. Evidence for the defaults: benchmarks/RESULTS.md, "Why DAX failed
    on real models", "DAX on real models: where issue 18 stands" and the ablation sections. Where
    the paper is silent, values come from the authors' reference code and say so.

    Sampling (paper Sec. III-B1):
      num_samples: N perturbations per image, sample 0 the unperturbed image (2000; the paper's best is 6000).
      keep_prob: probability that a segment is kept in a perturbation (0.5, the reference code's).
      segmentation: how segments are found: "quickshift" (default; LIME's settings, as the paper),
        "slic", "felzenszwalb", "grid", or any `segmentation.Segmenter`, a hashable callable
        image float32 [H, W, C] in [0, 1] -> integer label map [H, W] (the paper's V3 uses Segment
        Anything, see `paper_v3`); its maps are checked, never replaced by a grid. Label maps
        passed to `explain(..., segments=)` replace it.
      segmentation_options: keyword overrides passed to the segmenter (None).
      fill: what a switched-off segment shows. "auto" (default): per image, the image's mean colour
        or its blur, whichever the black box's answers to the image's first `fill_probe`
        perturbations spread more under (`engine.choose_fills`; diagnostic `fill_choice`); the
        map is the one that fill alone gives, at `fill_probe` extra queries. Why: "blur" (the image
        blurred, sigma max(H, W) / 16) suits natural photos (on real models it localises as well and
        ranks what insertion rewards better), but on synthetic scenes a blurred-out object still
        shows and the maps spread; "image_mean" is the other way round, and which one a model
        reacts to more tells them apart (RESULTS.md, "DAX's fill chosen per image").
        "segment_mean" leaves a uniform segment unchanged, so switching it off removes nothing;
        "segment_grey" (the reference code's) keeps an object's silhouette, which a CNN still reads.
      fill_probe: perturbations per image answered under both candidate fills of fill="auto"
        (64; unused by the other fills).
      kernel_width: proximity weight pi = exp(-d^2 / width^2), d the cosine distance of the
        keep-vector to all-ones (0.25, LIME's kernel as in the reference code).

    Networks (paper Sec. III-D):
      student: "segments" (default): f_S reads a masked perturbation as the share of each segment
        it shows (`nets.SegmentStudent`), which is all that tells one perturbation of an image from
        another. "image": the paper's CNN on the masked pixels at `resolution` (`nets.StudentNet`);
        on real photos it did not fit held-out perturbations and its masks died.
      student_hidden: hidden width of either student (32; 0: a linear segment student).
      target: what the student fits: "logit" (default; of the target class, clipped to +-12,
        `engine.student_targets`), since evidence adds up in the logit where the probability
        saturates; or "probability" (the paper).
      gate: how the mask acts on the segment student: "hard_concrete" (default) samples per sample
        and segment a relaxed Bernoulli gate that opens with the mask's share of the segment, so the
        student cannot undo a shrinking mask by growing its weights; "soft" multiplies by the share.
      gate_temperature: the gates' relaxation temperature (2/3, Louizos et al.'s).
      resolution: side of the square working resolution of the mask net's convolutions and the
        image student (48; the reference code trains at 128 px).
      mask_cells: the mask is a mask_cells x mask_cells grid, bilinearly upsampled to the image
        (16, as the reference code pools).
      mask_channels: width of the mask net's two 3x3 convolutions on the image (the paper's "two
        layer CNN"); 0 (default) leaves them out and the mask is its grid of logits: the
        convolutions added nothing on real photos.
      mask_grid_bias: a learnable logit per mask cell (True; not in the paper).
      mask_init: the grid's initial logit (0.0: the mask starts at 0.5 everywhere).
      mask_input: "original" (default) applies the mask net to the unperturbed image; "perturbed"
        to each perturbed sample (the paper; image student only).
      mask_fill, student_input, student_channels: the image student's input: what the mask hides
        ("fill", default, as a switched-off segment; "zero", the paper), "centred" (default) or
        "raw" pixels (`train.student_input`), and its two conv widths ((8, 16)).
      map_on_segments: (segment student) True (default): the map is the mask's mean over each
        segment, the mask as the student sees it; False: the mask's grid upsampled. Chosen with
        effect_power 0.1 as the one rule that met the Fashion floor and kept the real-model lead
        (IoU Fashion 0.723 against 0.678, planted scenes 0.60 against 0.51, EfficientNet-Lite0
        cases 0.550 against 0.570; on EfficientNet-Lite2, not looked at when choosing, 0.607
        against 0.618): benchmarks/RESULTS.md, "DAX's map: the mask and the segment effects combined".
      effect_power: the map is multiplied by (the student's effect of each segment, relative to the
        largest) ** effect_power (0.1; segment student only; 0: not): the effect demotes segments
        that straddle an object's edge while keeping the mask's extent. Raising it helps the
        Fashion scenes and costs IoU on the real-model cases (same section).

    Loss (paper Eq. 9-11):
      variant: "v2" (default) = pi-MSE + lambda_q * Q, Q = -(pi-MSE of the student on the
        complement x_p * (1 - m)); "v1" = pi-MSE + lambda_l1 * mean|m| + lambda_kl * KL(hist(y) ||
        hist(y_hat)).
      lambda_q: 0.5, the paper's best (Table IV).
      lambda_l1, lambda_kl: 0.001 and 0.02, the paper's best V1 (Table IV).
      complement_stop_gradient: stop the gradient of Q into the student, so that only the mask
        learns from it (True; not in the paper).
      lambda_area: weight of mean(m) in V2, in shares of the targets' variance (0.5; 0 in the
        paper): Q alone rewards masks that cover everything.
      normalize_loss: divide the MSE and Q terms by the pi-weighted variance of the row's training
        targets (True; not in the paper), so lambda_area prices area in explained variation.
      bounded_q: with normalize_loss, cap Q's reward at the error of predicting the mean (True;
        `losses.loss_v2`): unbounded, it drove masks to all ones.

    Optimisation (Adam; the paper's batch size and epochs were lost in extraction):
      steps: Adam steps per image (1000: the mask needs steps more than samples); None:
        epochs x floor(0.9 N / minibatch_size) (the presets).
      epochs: see steps (4).
      minibatch_size: samples per Adam step, at most the training samples (256). Formerly
        `batch_size`, which still works with a DeprecationWarning.
      learning_rate: the student's rate (1e-2).
      mask_learning_rate: the mask net's rate (3e-2: at the student's rate a mask starting at 0.5 moves too little).
      student_warmup: fraction of the steps in which only the student learns, the mask held at its
        initial value (0.25; not in the paper; see `train.make_optimizer`).
      validation_fraction: random share of samples held out (0.1); at `validations` (10)
        checkpoints after the warm-up each image keeps its parameters with the best validation
        loss (the paper's protocol; the reference code never selects). The held-out samples also
        give the per-image diagnostics (`engine.DIAGNOSTICS`).
      restarts: independently initialised (mask net, student) pairs per image, trained side by
        side on the same samples, their maps averaged (1): costs restarts x the training, no
        extra queries.

    Execution settings (images per group, inputs per black-box call, rows per training step)
    change speed and memory only, so they are not fields here: `explain(execution=daxjax.Execution(...))`.
    The former fields query_chunk, image_batch and vmap_width are accepted with a
    DeprecationWarning and ignored.
    """

    num_samples: int = 2000
    keep_prob: float = 0.5
    segmentation: SegmentationMethod | Segmenter = "quickshift"
    segmentation_options: Mapping[str, Any] | None = None
    fill: DAXFill = "auto"
    fill_probe: int = 64
    kernel_width: float = 0.25

    resolution: int = 48
    mask_cells: int = 16
    mask_input: MaskInput = "original"
    mask_fill: Literal["fill", "zero"] = "fill"
    student_input: Literal["raw", "centred"] = "centred"
    mask_channels: int = 0
    mask_grid_bias: bool = True
    mask_init: float = 0.0
    student: Literal["segments", "image"] = "segments"
    student_channels: tuple[int, int] = (8, 16)
    student_hidden: int = 32
    target: Literal["logit", "probability"] = "logit"
    gate: Literal["hard_concrete", "soft"] = "hard_concrete"
    gate_temperature: float = 2.0 / 3.0
    map_on_segments: bool = True
    effect_power: float = 0.1

    variant: Variant = "v2"
    lambda_q: float = 0.5
    lambda_l1: float = 0.001
    lambda_kl: float = 0.02
    complement_stop_gradient: bool = True
    lambda_area: float = 0.5
    normalize_loss: bool = True
    bounded_q: bool = True

    steps: int | None = 1000
    epochs: int = 4
    minibatch_size: int = 256
    learning_rate: float = 1e-2
    mask_learning_rate: float = 3e-2
    validation_fraction: float = 0.1
    validations: int = 10
    student_warmup: float = 0.25
    restarts: int = 1

    #: The fields that shape DAX's compiled training programs (networks, losses, optimiser and its
    #: schedule, minibatch, validation): the trainer's cache is keyed on them alone (`program_key`)
    #: and the trainer is built from them alone (`program_config`). A new field goes here or in
    #: OTHER_FIELDS (tests/test_dax.py checks that every field is in exactly one).
    PROGRAM_FIELDS: ClassVar[tuple[str, ...]] = (
        "num_samples", "keep_prob", "resolution", "mask_cells", "mask_input", "mask_fill", "student_input",
        "mask_channels", "mask_grid_bias", "mask_init", "student", "student_channels", "student_hidden", "gate",
        "gate_temperature", "variant", "lambda_q", "lambda_l1", "lambda_kl", "complement_stop_gradient",
        "lambda_area", "normalize_loss", "bounded_q", "steps", "epochs", "minibatch_size", "learning_rate",
        "mask_learning_rate", "validation_fraction", "validations", "student_warmup")
    #: The fields that act before training (the perturbations: segmentation, segmentation_options,
    #: fill, fill_probe; the samples' targets y and weights pi: target, kernel_width; the rows: restarts) or after
    #: it (map_on_segments, effect_power paint the maps), so configs differing only in them share the trainer.
    OTHER_FIELDS: ClassVar[tuple[str, ...]] = ("segmentation", "segmentation_options", "fill", "fill_probe", "target",
                                               "kernel_width", "restarts", "map_on_segments", "effect_power")

    # Deprecated: the execution settings (ignored, `daxjax.Execution`; InitVars of `MovedExecutionFields`,
    # passed here first) and the minibatch's old name.
    batch_size: dataclasses.InitVar[int | None] = None

    def __post_init__(self, query_chunk=None, image_batch=None, vmap_width=None, batch_size=None):
        warn_moved_fields(self, query_chunk=query_chunk, image_batch=image_batch, vmap_width=vmap_width)
        if batch_size is not None:
            warnings.warn("DAXConfig(batch_size=) is deprecated: the Adam minibatch is now called minibatch_size "
                          "(batch_size was easy to take for images per group)", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "minibatch_size", batch_size)
        # Hashable, so that configs can key caches of compiled programs.
        object.__setattr__(self, "student_channels", tuple(int(c) for c in self.student_channels))
        if self.segmentation_options is not None:
            object.__setattr__(self, "segmentation_options", dict(self.segmentation_options))
        check_segmenter(self.segmentation, "DAXConfig")
        # Choices come from the fields' Literal annotations.
        check_fields(self, positive=("num_samples", "resolution", "mask_cells", "epochs", "minibatch_size",
                                     "restarts", "validations", "fill_probe")
                     + (("student_hidden",) if self.student == "image" else ()),
                     optional_positive=("steps",), greater_than_zero=("gate_temperature",),
                     open_unit=("keep_prob",))
        if int(self.mask_channels) < 0 or (self.mask_channels == 0 and not self.mask_grid_bias):
            raise ValueError(f"DAXConfig.mask_channels must be >= 1, or 0 with mask_grid_bias=True (a mask of "
                             f"the grid alone), got {self.mask_channels!r} with mask_grid_bias={self.mask_grid_bias!r}")
        if int(self.student_hidden) < 0:
            raise ValueError(f"DAXConfig.student_hidden must be >= 0 (0: a linear segment student), "
                             f"got {self.student_hidden!r}")
        if not self.effect_power >= 0:
            raise ValueError(f"DAXConfig.effect_power must be >= 0, got {self.effect_power!r}")
        if self.student == "segments" and self.mask_input != "original":
            raise ValueError("DAXConfig(student='segments') reads the mask off the original image; "
                             f"mask_input={self.mask_input!r} needs student='image'")
        if self.num_samples < 3:
            raise ValueError(f"DAXConfig.num_samples must be >= 3 (the original, a training and a validation "
                             f"sample), got {self.num_samples!r}")
        if not 0.0 < self.validation_fraction < 0.5:
            raise ValueError("DAXConfig.validation_fraction must be in (0, 0.5), "
                             f"got {self.validation_fraction!r}")
        if self.resolution % self.mask_cells:
            raise ValueError(f"DAXConfig.resolution={self.resolution} must be a multiple of "
                             f"mask_cells={self.mask_cells}")
        if self.student == "image" and self.resolution % 8:
            raise ValueError(f"DAXConfig.resolution={self.resolution} must be a multiple of 8 "
                             "(the image student downsamples by 4, then by 2)")

    def program_key(self) -> tuple:
        """((name, value), ...) of PROGRAM_FIELDS: the cache key of DAX's compiled training programs."""
        return tuple((name, getattr(self, name)) for name in self.PROGRAM_FIELDS)

    def program_config(self) -> "DAXConfig":
        """The config the training programs are built from: PROGRAM_FIELDS as here, the rest at their
        defaults, so that nothing outside `program_key` can reach the programs."""
        return DAXConfig(**dict(self.program_key()))

    @property
    def num_samples_validation(self) -> int:
        return max(1, int(round(self.validation_fraction * self.num_samples)))

    @property
    def num_samples_train(self) -> int:
        return self.num_samples - self.num_samples_validation


    @property
    def minibatch(self) -> int:
        """Samples per Adam step: minibatch_size, or all training samples when there are fewer."""
        return min(self.minibatch_size, self.num_samples_train)

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples_train // self.minibatch

    @property
    def total_steps(self) -> int:
        """Adam steps per row: `steps`, or epochs x steps_per_epoch when steps is None."""
        return self.steps if self.steps is not None else self.epochs * self.steps_per_epoch

    @classmethod
    def paper_v1(cls, **changes) -> "DAXConfig":
        """The paper's DAX-V1: L1 + histogram-KL loss, mask net on each perturbed sample.

        N=6000, lambda_l1=0.001, lambda_kl=0.02 (paper, Table IV); 128 px, batch 16, 9 epochs,
        rate 1e-3, 32 mask channels and the grey segment fill come from the reference code.
        """
        return cls(**{**_PAPER_COMMON, "variant": "v1", **changes})

    @classmethod
    def paper_v2(cls, **changes) -> "DAXConfig":
        """The paper's DAX-V2: quadratic counterfactual loss Q with lambda=0.5, N=6000 (Table IV).

        No stop-gradient and no area term (paper and reference code); the rest as `paper_v1`.
        """
        return cls(**{**_PAPER_COMMON, "variant": "v2", "lambda_q": 0.5, **changes})

    @classmethod
    def paper_v3(cls, segmenter: Segmenter, **changes) -> "DAXConfig":
        """The paper's DAX-V3: `paper_v2` on segments from Segment Anything (or any segmenter).

        segmenter: image float32 [H, W, C] in [0, 1] -> integer label map [H, W]. daxjax fetches
        no weights; bring a SAM model you already have, e.g. (`segment_anything` package):

            from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
            generator = SamAutomaticMaskGenerator(sam_model_registry["vit_b"](checkpoint="sam_vit_b.pth"))

            def sam_segments(image):
                labels = np.zeros(image.shape[:2], np.int32)  # 0: pixels no mask covers
                masks = generator.generate((image * 255).round().astype(np.uint8))
                for k, m in enumerate(sorted(masks, key=lambda m: -m["area"]), start=1):
                    labels[m["segmentation"]] = k  # largest first: smaller masks stay on top
                return labels

            config = daxjax.DAXConfig.paper_v3(sam_segments)

        Label maps computed beforehand can be given instead (`explain(..., segments=)`,
        `explain_dataset(..., segments=)`). A map with one segment is an error, not a grid.
        """
        return cls.paper_v2(**{"segmentation": segmenter, **changes})


_PAPER_COMMON = dict(
    student="image", target="probability", gate="soft", steps=None, validations=9, restarts=1,
    effect_power=0.0,
    num_samples=6000, mask_input="perturbed", student_input="raw", mask_fill="zero",
    student_warmup=0.0, lambda_area=0.0, mask_grid_bias=False, normalize_loss=False, bounded_q=False,
    complement_stop_gradient=False, resolution=128, minibatch_size=16, epochs=9,
    learning_rate=1e-3, mask_learning_rate=1e-3, fill="segment_grey", mask_channels=32,
)

