"""Command line: plan a sweep file, run (or resume) its grid on Ray, draw its figures.

    python -m mcu_ray.sweep sweeps/quickstart.yaml
    python -m mcu_ray.sweep sweeps/full_grid.yaml --dry-run --json
    python -m mcu_ray.sweep sweeps/full_grid.yaml --dry-run --estimate

Rerunning the same command resumes: cells with results are skipped and every
artifact already in the store is reused. A changed ``tolerance`` needs no rerun of
anything: the report draws every verdict from the stored deviations with it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from mcu_ray.spec import SpecError, load_spec, spec_to_dict


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mcu_ray.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="sweep YAML file (see sweeps/)")
    parser.add_argument("--storage", help="storage root, a path or pyarrow.fs URI (default: the spec's, ./mcu_runs)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan's counts and exit; starts no Ray")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print one JSON object")
    parser.add_argument("--estimate", action="store_true",
                        help="with --dry-run: also print the expected device-hours per job kind (original, "
                             "retrained, endpoint, bend, evaluation) and in total, priced by a short calibration on "
                             "this machine's default device (CUDA if present, else the CPU); artifacts already in "
                             "the storage count as done; never downloads (hub models: a FLOP model, assumptions "
                             "listed)")
    parser.add_argument("--report-dir", help="where figures go (default: reports/<sweep name>)")
    parser.add_argument("--no-report", action="store_true", help="skip drawing figures at the end")
    parser.add_argument("--restart", action="store_true",
                        help="start this sweep over: drop its result tables (shared artifacts are kept and reused)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: RAY_ADDRESS, else a new local Ray instance)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a new local Ray instance")
    return parser.parse_args(argv)


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def check_storage(storage: str) -> None:
    """Refuse, before any work, a storage root that cannot be written."""
    from mcu_ray.store import Store

    try:
        Store(storage).write_bytes(b"ok", ".write_check")
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot write"
        raise SpecError("storage", storage, f"cannot be written ({type(exc).__name__}: {exc})") from None


def check_gpus(spec, gpus: float, local: bool) -> None:
    """Refuse GPU requests a local Ray instance cannot meet (a cluster may still add GPU nodes)."""
    res = spec.resources
    asked = [("resources.train.use_gpu", res.train.use_gpu, res.train.use_gpu),
             ("resources.eval_gpus", res.eval_gpus, res.eval_gpus > 0)]
    for path, value, wanted in asked:
        if wanted and gpus == 0:
            if local:
                raise SpecError(path, value, "this machine's Ray instance has no GPU: set it to false / 0, "
                                             "or run on a cluster with GPU nodes (--address)")
            print(f"warning: {path} asks for GPUs and the cluster has none yet; waiting for the autoscaler",
                  file=sys.stderr, flush=True)


def start_ray(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at ``address`` (or RAY_ADDRESS); otherwise start a private local instance."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    # A private, loopback-only instance for this process: no dashboard, no auth token to manage.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def estimate_or_fail(spec_file: str, spec, plan, storage: str) -> dict:
    """The sweep's estimated device-hours (``mcu_ray.estimate``); a task it cannot price exits 2."""
    # a guard, not a switch: the estimate reads only local files, and must never wait on a download
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from mcu_ray.estimate import estimate

    try:
        return estimate(spec, plan, storage)
    except SpecError as exc:
        fail(f"{spec_file}: {exc}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        fail(f"{args.spec}: {exc}")
    from mcu_ray.plan import make_plan

    if args.estimate and not args.dry_run:
        fail("--estimate: works with --dry-run only (it prices the sweep before anything runs); add --dry-run")
    storage = args.storage or spec.storage
    plan = make_plan(spec)
    counts = plan.counts()
    if args.dry_run:
        cost = estimate_or_fail(args.spec, spec, plan, storage) if args.estimate else None
        if args.json:
            print(json.dumps({"sweep": spec.name, **counts, **({"estimate": cost} if cost else {})}))
        else:
            print(f"sweep {spec.name}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
            if cost:
                from mcu_ray.estimate import format_estimate

                print(format_estimate(spec.name, cost))
        return 0
    try:
        check_storage(storage)
    except SpecError as exc:
        fail(f"{args.spec}: {exc}")

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from mcu_ray.runner import run_grid, spec_hash
    from mcu_ray.store import Store
    from mcu_ray.tables import TABLES, upgrade_layout

    started = time.time()
    local = not ray.is_initialized() and not (args.address or os.environ.get("RAY_ADDRESS"))
    if not ray.is_initialized():
        start_ray(args.address, args.num_cpus)
    try:
        check_gpus(spec, ray.cluster_resources().get("GPU", 0), local)
    except SpecError as exc:
        ray.shutdown()
        fail(f"{args.spec}: {exc}")
    print(f"sweep {spec.name}: {counts['cells']} cells, {counts['endpoints']} endpoints, {counts['curves']} curves, "
          f"{counts['training_jobs']} training jobs, {counts['evaluations']} evaluations -> {storage}", flush=True)
    # the plan's keys tell the report which stored rows are this version's (an edited sweep
    # keeps the rows of cells it dropped: nothing computed is deleted, nothing stale is shown)
    current = {"cells": [c.key for c in plan.cells], "models": [*plan.originals, *plan.retrained],
               "pathway": [e.key for e in plan.endpoints.values() if e.source]}
    Store(storage).write_bytes(json.dumps({"spec": spec_to_dict(spec), "spec_hash": spec_hash(spec), "plan": current},
                                          indent=1, default=str).encode(), spec.name, "spec.json")
    if args.restart:
        for table in (*TABLES, "tune"):
            Store(storage).delete_dir(spec.name, table)
        print(f"--restart: dropped the result tables of {spec.name}", flush=True)
    elif upgrade_layout(Store(storage), spec.name):  # tables written before the flat layout
        print(f"moved {spec.name}'s result tables out of their task=/setting= folders (one schema per table)",
              flush=True)
    try:
        outcome = run_grid(spec, plan, storage)
    finally:
        ray.shutdown()
    print(f"grid done in {time.time() - started:.0f}s: {outcome['cells_run']} cells run, "
          f"{outcome['cells_skipped']} already done, {outcome['cells_failed']} failed", flush=True)
    if not args.no_report:
        from mcu_ray.report import build_report

        out = args.report_dir or os.path.join("reports", spec.name)
        index = build_report(storage, spec.name, out)
        print(f"report: {index}", flush=True)
    return 1 if outcome["cells_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
