"""What the benchmarks run on: generated data with exact ground truth, and the black boxes trained on it.

    fashion/     Fashion-MNIST objects pasted on photos (ground truth: the object's pixels) and the
                 committed CNN `fashion_cnn.onnx` (`python -m benchmarks.datasets.fashion.train`)
    audio/       real sound events padded with noise (ground truth: the event's interval) and the
                 committed `sound_cnn.onnx` (`python -m benchmarks.datasets.audio.train`)
    realmodels/  composites and restricted views of the bundled photos (ground truth: the pasted
                 pixels / the visible region) and the real ImageNet models (Lite2 exported on first use)
"""
