"""methods/dax/: DAX, distillation-aided explanations (Bhattacharya et al., arXiv 2409.11123).

    config.py   `DAXConfig`, frozen data with the paper's presets
    nets.py     the mask net f_M and the students f_S (segment-space and the paper's CNN)
    losses.py   the pure V1 / V2 objectives
    train.py    the trainer: make_trainer(config, ...) -> Trainer(init, step, end_epoch, maps, run)
    engine.py   sample, query, prepare, train both nets per image side by side, explain; diagnostics
"""
