"""Sound clips of real events padded with noise (exact event intervals) and the ONNX black box trained on them."""
