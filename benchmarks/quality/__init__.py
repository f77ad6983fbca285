"""Quality: do the maps find what the black box uses? Each module writes its own RESULTS.md section.

    realmodels    real photos, real ImageNet models, exact ground truth (the primary table)
    fashion       Fashion-MNIST scenes and our CNN: IoU, wrong-class IoU, deletion / insertion
    photos        the bundled photos and EfficientNet-Lite0, no ground truth: deletion / insertion
    audio         where in time a sound classifier listens (1-D IoU, deletion over time)
    amortised     amortised DAX: quality against black-box queries per explained image
    dax_map_rule  how DAX's map combines the mask and the segment effects
    dax_variants  DAX's ablation variants, shared by realmodels and fashion (not a command)
"""


def fill_choice_note(name: str, diagnostics: dict) -> str | None:
    """"<name>: fill="auto" chose the blur for k of n images" when a DAX explanation chose its fill
    per image (`fill_choice` diagnostic, NaN for a fixed fill), else None."""
    import numpy as np

    from daxjax.perturbation.fills import AUTO_FILLS

    choice = np.asarray(diagnostics.get("fill_choice", []), np.float64)
    if choice.size == 0 or np.isnan(choice).all():
        return None
    blur = int((choice == AUTO_FILLS.index("blur")).sum())
    return f'{name}: fill="auto" chose the blur for {blur} of {choice.size} images, the image mean for the others'
