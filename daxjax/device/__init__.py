"""device/: how perturbations reach the black box and the devices.

    querying.py   the one path by which every explainer queries the black box from jitted code
                  (on the device for a JAX black box, by DLPack, or through a host callback), and
                  how many inputs go in one call
    sharding.py   splitting a group of images over the local devices (an image mesh, `over_images`)

The lowest layer of the engines: it knows black boxes (`blackbox_adapters`) and JAX, nothing of
segments, explainers or datasets.
"""
