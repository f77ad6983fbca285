"""dataset/: explaining whole datasets, streamed, resumable, on every local device.

    sources.py    where images come from (directories, globs, .npz, arrays, iterables) and reading them
    store.py      the result store (zarr columns plus an index of committed batches), `load_results`
    budget.py     images per step and queries per call from the memory budget and the method's needs
    pipeline.py   `explain_dataset`: worker processes prepare batches while the devices explain
    amortised.py  method "dax-amortised": the fit phase (fit set, explainer kept in the store, resume)

`sources` imports nothing of daxjax (`daxjax.amortised.fit` reads sources with it too).

Above the explainers (`daxjax.methods`, through their `Method` records); below the reports.
"""
