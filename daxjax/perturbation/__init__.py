"""perturbation/: what an explainer shows the black box instead of the image.

    segmentation.py   superpixels (quickshift, slic, felzenszwalb, grid, any callable), label maps
    fills.py          what a switched-off segment or masked pixel shows (`FillMethod`)
    sampling.py       keys per image, keep-vectors, proximity weights, perturbed images, gates
    segments.py       segment-space perturbation shared by DAX, LIME and KernelSHAP: segments and
                      fills made on the host, keep-vectors on the device, queries through
                      `daxjax.device.querying`, and attributions per segment painted back as maps

Above `daxjax.device`; below the explainers (`daxjax.methods`).
"""
