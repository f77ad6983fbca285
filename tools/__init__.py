"""Scripts that build the bundled models, run by hand from a repository checkout (`python -m tools.<name>`).

They are not part of the installed package (pyproject's `packages.find` lists only `daxjax*` and
`blackbox_adapters*`); the files they write live where the package loads them.

    export_efficientnet_lite0  EfficientNet-Lite0 -> blackbox_adapters/models/efficientnet_lite0.onnx,
                               imagenet_classes.json and the notice (and Lite2 for benchmarks/datasets/realmodels)
    make_colour_models         the planted colour-patch classifiers -> blackbox_adapters/models/colour_*.onnx
    train_glance_classifiers   the MorphoSynth CNNs -> daxjax/glance/models/*.onnx + MODEL_CARD.md
"""
