"""Endpoint metrics of every method under FO, FO+CL and SO on digits, beside the original
and the retrained model (the table of the methods issue). No Ray: plain jobs, one process.

    python bench/digits_methods.py [--ratio 10] [--methods ga rl bt su]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from mcu_ray import jobs
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec

METRICS = ("acc_test", "acc_retain", "acc_forget", "zrf", "loss_retain", "loss_forget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", type=float, default=10.0, help="forget ratio, percent")
    parser.add_argument("--methods", nargs="+", default=["ga", "rl", "bt", "su"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = parse_spec({"name": "methods", "settings": ["FO-SO", "CL-Non-CL"], "seeds": [args.seed],
                       "tasks": [{"name": "digits", "ratios": [args.ratio], "methods": args.methods}]})
    plan = make_plan(spec)
    store = jobs.Store(tempfile.mkdtemp(prefix="mcu_methods_"))
    original, retrained = next(iter(plan.originals.values())), next(iter(plan.retrained.values()))
    jobs.build_original(store, original)
    retrained_metrics = jobs.build_retrained(store, retrained)["metrics"]
    rows = [("original", "", jobs.original_metrics(store, original, retrained)), ("retrained", "", retrained_metrics)]
    for method in args.methods:
        for optimizer, curriculum, label in (("fo", "none", "FO"), ("fo", "cl", "FO+CL"), ("so", "none", "SO")):
            endpoint = next(e for e in plan.endpoints.values()
                            if (e.method, e.optimizer, e.curriculum) == (method, optimizer, curriculum))
            started = time.time()
            meta = jobs.build_endpoint(store, endpoint)
            rows.append((method.upper(), f"{label} ({time.time() - started:.1f}s)", meta["metrics"]))
    print(f"digits, forget ratio {args.ratio:g} %, seed {args.seed}")
    print("| model | variant | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for name, variant, metrics in rows:
        print(f"| {name} | {variant} | " + " | ".join(f"{metrics[m]:.3f}" for m in METRICS) + " |")


if __name__ == "__main__":
    main()
