"""Runs `explain_dataset` in a fresh process for tests/test_pipeline.py (kill, devices, hosts).

    python tests/pipeline_run.py '{"source": ..., "out": ..., "method": "dax", "config": {...}, ...}'

Prints the run's summary as one JSON line. Options: "slow" (seconds the black box sleeps per
call, so that a test can kill the run between batches), "coordinator"/"num_processes"/
"process_id" (jax.distributed on this host).
"""

import json
import sys
import time


def main() -> None:
    spec = json.loads(sys.argv[1])
    import jax

    if spec.get("coordinator"):
        jax.distributed.initialize(spec["coordinator"], num_processes=spec["num_processes"],
                                   process_id=spec["process_id"])
    import daxjax
    from blackbox_adapters import OnnxBlackBox, bundled_model_path
    from daxjax.explain import EXPLAINERS

    onnx = OnnxBlackBox(bundled_model_path("colour_nchw"))
    slow = spec.get("slow", 0.0)

    def bb(x):
        time.sleep(slow)
        return onnx(x)

    config = EXPLAINERS[spec["method"]][0](**spec["config"])
    summary = daxjax.explain_dataset(bb, spec["source"], spec["out"], method=spec["method"], config=config,
                                     seed=spec.get("seed", 0), batch_size=spec["batch"],
                                     workers=spec.get("workers", 0), progress=False)
    print(json.dumps({"explained": summary.explained, "skipped": summary.skipped, "errors": summary.errors,
                      "devices": len(jax.local_devices()), "process_index": summary.process_index,
                      "process_count": summary.process_count}))


if __name__ == "__main__":
    main()
