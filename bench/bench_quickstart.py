"""The quickstart grid two ways on one machine: mcu_ray on Ray, and the naive loop.

  mcu_ray  the real CLI in a subprocess (`python -m mcu_ray.sweep SPEC --storage TMP --no-report`):
           shared endpoints and curves, cells and t-points in parallel on a local Ray instance.
  naive    the way the authors' scripts do it, in one process with no Ray: the original and the
           retrained references are trained once per run (the authors load a fine-tuned original);
           every cell then trains its own two endpoints and fits its own Bezier bend(s) in a fresh
           store, and evaluates all points of each of its curves one after another, t=0 and t=1
           included.

Both sides run the same copy of the package, taken when the benchmark starts (the working
tree may change while it runs); both are timed from process start to exit, and their
training jobs are counted from the stores' job ledgers. See bench/README.md.

    python bench/bench_quickstart.py --json-out bench/quickstart.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from cli import TRAINING_KINDS, run_sweep_cli  # bench/, the script's own folder

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(REPO / "sweeps" / "quickstart.yaml"), help="sweep YAML file "
                        "(default: sweeps/quickstart.yaml)")
    parser.add_argument("--skip-naive", action="store_true", help="run only the mcu_ray side")
    parser.add_argument("--skip-mcu", action="store_true", help="run only the naive side")
    parser.add_argument("--json-out", help="also write the comparison as JSON to this path")
    parser.add_argument("--naive-threads", type=int, default=1,
                        help="torch intra-op threads of the naive process (default 1, as mcu_ray gives each "
                             "of its processes; 0 = all cores)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores and code snapshot; print where")
    parser.add_argument("--naive-worker", metavar="DIR", help=argparse.SUPPRESS)  # internal: the naive process
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- the code under test


def snapshot_code(dest: str) -> dict:
    """Copy the package to ``dest``; both sides import it from there, whatever happens to the tree.

    Returns where it came from (commit, and whether the tree had uncommitted changes).
    """
    shutil.copytree(REPO / "mcu_ray", os.path.join(dest, "mcu_ray"), ignore=shutil.ignore_patterns("__pycache__"))

    def git(*argv):
        done = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--", "mcu_ray")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(status) if status is not None else None}


def code_env(code: str) -> dict:
    """Environment of a child that must import the snapshot (Ray workers inherit it)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [code, os.environ.get("PYTHONPATH")])),
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


# ----------------------------------------------------------------------------- counting


def ledger_summary(roots: list[str], points: int) -> dict:
    """Training jobs and evaluations recorded in the job ledgers of ``roots``, and when they ran."""
    from mcu_ray.store import Store

    records, metas = [], []
    for root in roots:
        store = Store(root)
        own = store.job_records()
        records += own
        metas += [(kind, store.read_meta(key)) for key, kind in {r["key"]: r["kind"] for r in own}.items()
                  if store.has_artifact(key)]
    loop_seconds = Counter()
    for kind, meta in metas:
        loop_seconds[kind] += meta.get("train_seconds", 0.0)
    kinds = Counter(r["kind"] for r in records)
    per_key = Counter(r["key"] for r in records if r["kind"] in TRAINING_KINDS)
    return {
        "first_job_started_at": min((r["started_at"] for r in records), default=None),
        "last_artifact_written_at": max((m["written_at"] for _, m in metas), default=None),
        # time inside the training loops themselves, as the builders measured it
        "training_loop_seconds": sum(loop_seconds.values()),
        "training_loop_seconds_by_kind": {k: loop_seconds[k] for k in TRAINING_KINDS},
        "training_jobs": sum(kinds[k] for k in TRAINING_KINDS),
        "training_jobs_by_kind": {k: kinds[k] for k in TRAINING_KINDS},
        "distinct_trained_keys": len(per_key),
        "keys_trained_more_than_once": sorted(k for k, n in per_key.items() if n > 1),
        "evaluation_batches": kinds["evaluation"],
        # every evaluation batch is one curve's interior points (t=0 and t=1 are its endpoints)
        "curve_points_evaluated": kinds["evaluation"] * max(points - 2, 0),
    }


# ----------------------------------------------------------------------------- mcu_ray side


def run_mcu(spec_path: str, storage: str, sweep_name: str, points: int, code: str) -> dict:
    """The real CLI in a subprocess on a fresh store; wall time from launch to exit."""
    from mcu_ray.store import Store
    from mcu_ray.tables import read_table

    cmd = [sys.executable, "-m", "mcu_ray.sweep", spec_path, "--storage", storage, "--no-report"]
    print("mcu_ray: " + " ".join(cmd), flush=True)
    log_path = os.path.join(storage, "bench_cli.log")
    os.makedirs(storage, exist_ok=True)
    # cwd = the snapshot: Ray puts the driver's directory on its workers' sys.path
    returncode, launched, wall = run_sweep_cli(cmd, code, code_env(code), log_path, "mcu_ray")

    store = Store(storage)
    results = read_table(store, sweep_name, "results")
    summary = ledger_summary([storage], points)
    if summary["first_job_started_at"] is not None:  # where the time went: start-up, jobs, wind-down
        summary["phases_seconds"] = {
            "launch_to_first_job": summary["first_job_started_at"] - launched,
            "first_job_to_last_artifact": summary["last_artifact_written_at"] - summary["first_job_started_at"],
            "last_artifact_to_exit": launched + wall - summary["last_artifact_written_at"]}
    # t=0 and t=1 of every curve come from the endpoints' own evaluations, done inside their jobs
    summary["model_evaluations"] = (summary["curve_points_evaluated"] + summary["training_jobs_by_kind"]["endpoint"]
                                    + summary["training_jobs_by_kind"]["retrained"])
    return {"wall_seconds": wall, "returncode": returncode, "command": cmd, "log": log_path,
            "result_rows": results.num_rows, "rows": results.to_pylist(), **summary}


# ----------------------------------------------------------------------------- naive side


def copy_artifact(src, dst, key: str) -> None:
    """Hand a cell's fresh store a reference model, as a script loads a fine-tuned checkpoint."""
    for name in ("weights.safetensors", "meta.json"):  # meta.json last: it marks the artifact complete
        dst.write_bytes(src.read_bytes("artifacts", key, name), "artifacts", key, name)


def naive_grid(spec_path: str, root: str, threads: int) -> dict:
    """Every cell from scratch, one after another, in this process; no Ray."""
    import torch

    from mcu_ray import jobs
    from mcu_ray.plan import make_plan
    from mcu_ray.spec import load_spec
    from mcu_ray.store import Store

    if threads > 0:
        torch.set_num_threads(threads)
    spec = load_spec(spec_path)
    plan = make_plan(spec)
    seconds = Counter()

    # Stage 1: the references, once per run (the authors' scripts start from a fine-tuned original).
    shared = Store(os.path.join(root, "shared"))
    started = time.perf_counter()
    for original in plan.originals.values():
        jobs.build_original(shared, original)
    for reference in plan.retrained.values():
        jobs.build_retrained(shared, reference)
    seconds["references"] += time.perf_counter() - started

    # Stage 2: each cell on its own, nothing carried over from earlier cells.
    rows, curve_points, endpoint_evaluations, roots = [], 0, 0, [shared.uri]
    for index, cell in enumerate(plan.cells):
        cell_started = time.perf_counter()
        store = Store(os.path.join(root, f"cell-{index:03d}"))
        roots.append(store.uri)
        first = plan.endpoints[cell.endpoint_1]
        copy_artifact(shared, store, first.original)
        copy_artifact(shared, store, cell.retrained)

        started = time.perf_counter()
        for key in (cell.endpoint_1, cell.endpoint_2):
            jobs.build_endpoint(store, plan.endpoints[key])  # evaluates the endpoint as well
            endpoint_evaluations += 1
        seconds["endpoints"] += time.perf_counter() - started

        for kind, key in cell.curves:
            # A shared linear curve is keyed by the sorted pair; here it runs from this cell's first endpoint.
            curve = replace(plan.curves[key], endpoint_1=cell.endpoint_1, endpoint_2=cell.endpoint_2)
            started = time.perf_counter()
            if curve.trained:
                jobs.build_bend(store, curve)
            seconds["bends"] += time.perf_counter() - started

            started = time.perf_counter()
            all_ts = [float(t) for t in jobs.t_grid(curve.points)]  # t=0 and t=1 included
            for point in jobs.evaluate_curve_serially(store, curve, all_ts):
                rows.append({"cell_id": cell.key, "curve": kind, **point, "t": round(point["t"], 6)})
                curve_points += 1
            seconds["evaluation"] += time.perf_counter() - started
        print(f"  | naive [{index + 1}/{len(plan.cells)}] {cell.setting:<5} {first.method}/"
              f"{plan.endpoints[cell.endpoint_2].method} ratio={cell.ratio:g}%  "
              f"({time.perf_counter() - cell_started:.1f}s)", flush=True)

    summary = ledger_summary(roots, plan.points)
    summary["curve_points_evaluated"] = curve_points  # the naive way records no evaluation batches
    summary["model_evaluations"] = curve_points + endpoint_evaluations + summary["training_jobs_by_kind"]["retrained"]
    return {"torch_threads": torch.get_num_threads(), "stage_seconds": dict(seconds), "result_rows": len(rows),
            "rows": rows, **summary}


def run_naive(spec_path: str, root: str, threads: int, code: str) -> dict:
    """The naive grid in a child process, so that its wall time counts start-up as the CLI's does."""
    cmd = [sys.executable, os.path.abspath(__file__), "--naive-worker", root, "--spec", spec_path,
           "--naive-threads", str(threads)]
    print(f"naive: one process, torch threads = {threads or 'all cores'}", flush=True)
    started = time.perf_counter()
    returncode = subprocess.run(cmd, cwd=code, env=code_env(code)).returncode
    wall = time.perf_counter() - started
    out = os.path.join(root, "naive.json")
    if returncode != 0 or not os.path.exists(out):
        raise SystemExit(f"naive: the worker exited with {returncode}")
    with open(out) as f:
        return {"wall_seconds": wall, "returncode": returncode, **json.load(f)}


# ----------------------------------------------------------------------------- comparison


def max_metric_difference(mcu_rows: list[dict], naive_rows: list[dict]) -> dict:
    """Largest |naive - mcu_ray| over matching (cell, curve, t) rows and metrics: same science?"""
    mcu = {(r["cell_id"], r["curve"], round(r["t"], 6)): r for r in mcu_rows}
    worst = {"value": 0.0, "metric": None, "t": None, "matched_rows": 0}
    for row in naive_rows:
        other = mcu.get((row["cell_id"], row["curve"], row["t"]))
        if other is None:
            continue
        worst["matched_rows"] += 1
        for metric, value in row.items():
            if metric in ("cell_id", "curve", "t") or not isinstance(value, (int, float)):
                continue
            if isinstance(other.get(metric), (int, float)) and abs(value - other[metric]) > worst["value"]:
                worst.update(value=abs(value - other[metric]), metric=metric, t=row["t"])
    return worst


def _fmt_load(load) -> str:
    return "/".join(f"{x:.1f}" for x in load)


def table(report: dict) -> str:
    sides = [s for s in ("mcu_ray", "naive") if s in report]
    lines = [f"{'':34}" + "".join(f"{s:>12}" for s in sides)]

    def line(label, fmt):
        lines.append(f"{label:34}" + "".join(f"{fmt(report[s]):>12}" for s in sides))

    line("wall time (s)", lambda r: f"{r['wall_seconds']:.1f}")
    line("  in training loops (s)", lambda r: f"{r['training_loop_seconds']:.1f}")
    line("training jobs", lambda r: str(r["training_jobs"]))
    line("  original/retrained/endpoint/bend",
         lambda r: "/".join(str(r["training_jobs_by_kind"][k]) for k in TRAINING_KINDS))
    line("curve points evaluated", lambda r: str(r["curve_points_evaluated"]))
    line("model evaluations (all)", lambda r: str(r["model_evaluations"]))
    line("result rows (cell, curve, t)", lambda r: str(r["result_rows"]))
    if "phases_seconds" in report.get("mcu_ray", {}):
        phases = report["mcu_ray"]["phases_seconds"]
        lines.append("mcu_ray phases (s): " + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in phases.items()))
    if "naive" in report:
        stages = report["naive"]["stage_seconds"]
        lines.append("naive stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    machine = report["machine"]
    lines.append(f"load average (1/5/15 min) before {_fmt_load(machine['load_average_before'])}, "
                 f"after {_fmt_load(machine['load_average_after'])}, on {machine['cpus']} CPUs")
    if len(sides) == 2:
        lines.append(f"naive / mcu_ray wall time: {report['wall_ratio_naive_over_mcu']:.2f}x")
        diff = report["max_metric_difference"]
        lines.append(f"max |naive - mcu_ray| over {diff['matched_rows']} matched rows: {diff['value']:.3g}"
                     + (f" ({diff['metric']} at t={diff['t']:g})" if diff["metric"] else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    spec_path = os.path.abspath(args.spec)
    if args.naive_worker:
        result = naive_grid(spec_path, args.naive_worker, args.naive_threads)
        with open(os.path.join(args.naive_worker, "naive.json"), "w") as f:
            json.dump(result, f, default=str)
        return 0
    if args.skip_mcu and args.skip_naive:
        raise SystemExit("nothing to run: both --skip-mcu and --skip-naive given")

    tmp = tempfile.mkdtemp(prefix="mcu_bench_")
    try:
        report = compare(args, spec_path, tmp)
    finally:
        if args.keep:
            print(f"stores and code snapshot kept under {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print("\n" + table(report), flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"json: {args.json_out}", flush=True)
    return 0 if report.get("mcu_ray", {}).get("returncode", 0) == 0 else 1


def compare(args: argparse.Namespace, spec_path: str, tmp: str) -> dict:
    """Run the requested sides on one snapshot of the code, in ``tmp``; the report without per-point rows."""
    code = os.path.join(tmp, "code")
    source = snapshot_code(code)
    sys.path.insert(0, code)  # this process reads the stores with the same code

    import ray
    import torch

    from mcu_ray.plan import make_plan
    from mcu_ray.spec import load_spec

    spec = load_spec(spec_path)
    counts = make_plan(spec).counts()
    print(f"{spec.name}: {counts['cells']} cells, {counts['endpoints']} endpoints, {counts['curves']} curves, "
          f"{counts['points_per_curve']} points per curve; {os.cpu_count()} CPUs; code {source['commit']}"
          + (" + uncommitted changes" if source["uncommitted_changes"] else ""), flush=True)
    report = {"spec": spec_path, "sweep": spec.name, "code": source, "plan_counts": counts,
              "naive_torch_threads": args.naive_threads,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                          "ray": ray.__version__, "platform": platform.platform(),
                          # other work on the machine skews both sides: compare runs taken at low load
                          "load_average_before": os.getloadavg()}}
    if not args.skip_mcu:
        report["mcu_ray"] = run_mcu(spec_path, os.path.join(tmp, "store_mcu_ray"), spec.name, spec.points, code)
    if not args.skip_naive:
        report["naive"] = run_naive(spec_path, os.path.join(tmp, "store_naive"), args.naive_threads, code)
    report["machine"]["load_average_after"] = os.getloadavg()
    if "mcu_ray" in report and "naive" in report:
        report["wall_ratio_naive_over_mcu"] = report["naive"]["wall_seconds"] / report["mcu_ray"]["wall_seconds"]
        report["max_metric_difference"] = max_metric_difference(report["mcu_ray"]["rows"], report["naive"]["rows"])
    for side in ("mcu_ray", "naive"):
        report.get(side, {}).pop("rows", None)  # per-point metrics: compared above, too long to keep
    return report


if __name__ == "__main__":
    sys.exit(main())
