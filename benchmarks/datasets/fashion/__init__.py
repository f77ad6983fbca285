"""Fashion-MNIST scenes with exact ground-truth masks and the ONNX black box trained on them."""
