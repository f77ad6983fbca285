"""device/: how perturbations reach the black box and the devices.

    querying.py   the one path by which every explainer queries the black box from jitted code
                  (on the device for a JAX black box, by DLPack, or through a host callback)
    execution.py  the execution settings (`Execution`: images per group, inputs per black-box call,
                  rows per training step), decided in one place, never part of a method's config
    sharding.py   splitting a group of images over the local devices (an image mesh, `over_images`)

The lowest layer of the engines: it knows black boxes (`blackbox_adapters`) and JAX, nothing of
segments, explainers or datasets.
"""
