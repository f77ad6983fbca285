"""methods/: the explainers, each a config and a group function behind one contract.

    base.py         the contract: `GroupResult`, the `ExplainGroup` protocol, the `Method` record,
                    `normalise` (the scaling every map gets last), `gather_diagnostics`,
                    `call_group` (runs a group; adds every query-only method's `ANSWER_DIAGNOSTICS`:
                    did the black box's answer change under perturbation?)
    registry.py     `REGISTRY`: method name -> `Method`; `resolve_config`, `method_of`
    dax/            DAX: config, nets, losses, engine (a mask net and a student trained per image)
    rise.py         RISE: score-weighted random smooth masks
    surrogate.py    the engine LIME and KernelSHAP share: sample segments, query, solve a regression
    lime.py         LIME: keep-vectors and a proximity-weighted ridge regression
    kernelshap.py   KernelSHAP: Shapley-kernel coalitions and the constrained least squares
    occlusion.py    Occlusion: a sliding filled window
    gradients.py    gradient references for JAX black boxes (not query-only)

Above `daxjax.perturbation` and `daxjax.device`; below `daxjax.explain`, the dataset pipeline and
the reports, which learn what they need about a method from its `Method` record.
"""
