"""DAX's cost against RISE's at equal N, side by side on the real-model cases.

    python -m benchmarks.probes.dax_cost                 # 16 composites + 4 restricted views, N = 1000 and 3000
    python -m benchmarks.probes.dax_cost --budgets 1000 --repeats 1 --no-write

DAX (today's default) and RISE explain the same cases (EfficientNet-Lite0, the benchmark's first
cases, seed 0) in alternation, `--repeats` times each after one warm-up round (compilation), and
the ratio of their seconds per image is reported per round and as the median: a ratio from one
run on one machine, not absolute times (CPU). Composites are explained as one batch of 16,
restricted views one at a time (each behind its own region), as in the benchmark.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.datasets.realmodels import models as model_zoo
from benchmarks.datasets.realmodels.cases import make_cases
from benchmarks.results import write_section

SECTION = "## DAX's cost against RISE's on real models (issue 18)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="1000,3000")
    parser.add_argument("--composites", type=int, default=16)
    parser.add_argument("--restricted", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    import daxjax
    from benchmarks.quality.realmodels import explain_cases
    from benchmarks.throughput.common import machine

    model = model_zoo.load("lite0")
    cases = make_cases(model, 224, args.composites, args.restricted, seed=0)
    command = "python -m benchmarks.probes.dax_cost " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [SECTION, "", f"Command: `{command.strip()}` — {machine()}, {time.strftime('%Y-%m-%d')}.", "",
             f"{len(cases)} cases of the real-model benchmark ({args.composites} composites as one batch, "
             f"{args.restricted} restricted views one at a time), EfficientNet-Lite0; DAX and RISE alternated, "
             f"{args.repeats} timed round(s) after a warm-up round. Seconds per image (this machine, this run) and "
             "their ratio:", "", "| N | round | DAX s/image | of which training | RISE s/image | DAX / RISE |",
             "|---|---|---|---|---|---|"]
    for line in lines:
        print(line, flush=True)
    for budget in (int(b) for b in args.budgets.split(",")):
        configs = {"dax": daxjax.DAXConfig(num_samples=budget), "rise": daxjax.RISEConfig(num_samples=budget)}
        ratios = []
        for round_ in range(args.repeats + 1):
            seconds, timings = {}, {}
            for method, config in configs.items():
                _, seconds[method], _, timings[method] = explain_cases(model, cases, method, config)
            if round_ == 0:
                continue  # compilation
            training = timings["dax"]["training"] / len(cases)
            ratios.append(seconds["dax"] / seconds["rise"])
            line = (f"| {budget} | {round_} | {seconds['dax']:.2f} | {training:.2f} | {seconds['rise']:.2f} | "
                    f"{ratios[-1]:.2f} |")
            print(line, flush=True)
            lines.append(line)
        lines.append(f"| {budget} | median | | | | **{np.median(ratios):.2f}** |")
        print(lines[-1], flush=True)
    lines.append("")
    if not args.no_write:
        write_section(SECTION, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
