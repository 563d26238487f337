"""The report of a whole grid, timed: a synthetic store of the full grid's size, then the report.

The store holds a row for every cell of the sweep file's plan (default: sweeps/full_grid.yaml,
its tasks, settings, methods, ratios, seeds and 16 points per curve), written through
``mcu_ray.tables.write_table`` (bench/synthetic_grid.py); some cells diverged, some missing.
Only the report is timed: ``python -m mcu_ray.report`` in a fresh process, launch to exit
(imports, reading every table, every figure as PNG and PDF, index.html).

    python bench/bench_report.py                         # the full grid, its one seed
    python bench/bench_report.py --seeds 0 1 2           # three seeds: bands and mean ± std
    python bench/bench_report.py --spec sweeps/quickstart.yaml --out reports/synthetic --keep
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
from pathlib import Path

from synthetic_grid import write_synthetic_sweep  # bench/, the script's own folder

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 120  # the target on 2 CPUs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(REPO / "sweeps" / "full_grid.yaml"), help="sweep file whose plan the "
                        "synthetic rows follow (default: sweeps/full_grid.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds instead of the sweep file's")
    parser.add_argument("--failed-every", type=int, default=97, help="every n-th cell diverged (0: none)")
    parser.add_argument("--missing-every", type=int, default=101, help="every n-th cell without rows (0: none)")
    parser.add_argument("--out", help="report folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store and report; print where")
    parser.add_argument("--json-out", help="also write the figures as JSON to this path")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench_report_")
    storage, out = os.path.join(work, "store"), args.out or os.path.join(work, "report")
    started = time.perf_counter()
    counts = write_synthetic_sweep(args.spec, storage, args.seeds, args.failed_every, args.missing_every)
    print(f"synthetic store: {counts['cells']} cells planned, {counts['results']} results rows, "
          f"{counts['barriers']} barrier rows, {counts['references']} reference rows "
          f"({time.perf_counter() - started:.0f}s to write)", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mcu_ray.report", storage, counts["sweep"], "--out", out],
                          cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        return done.returncode
    figures = sorted(p for p in os.listdir(out) if p.endswith(".png"))
    summary = {**counts, "rows": counts["results"] + counts["barriers"] + counts["references"],
               "report_seconds": round(wall, 1), "figures": len(figures), "cpus": os.cpu_count(),
               "machine": platform.processor() or platform.machine(), "index": done.stdout.strip()}
    print(f"report: {summary['rows']} rows -> {len(figures)} figures (PNG + PDF) and index.html in {wall:.1f}s "
          f"on {os.cpu_count()} CPUs (target < {TARGET_SECONDS}s)", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1))
    if args.keep:
        print(f"kept: the store {storage}, the report {out}", flush=True)
    else:  # the store, and the report unless --out put it elsewhere
        shutil.rmtree(work, ignore_errors=True)
    return 0 if wall < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
