"""Command line: draw the report of one sweep from its result tables.

    python -m mcu_ray.report mcu_runs/quickstart
    python -m mcu_ray.report s3://bucket/runs/full_grid --out reports/full_grid

The argument is the sweep folder, <storage root>/<sweep name>. Prints the path of
index.html; exits 2 when the folder holds no results.
"""
from __future__ import annotations

import argparse
import os
import sys

from mcu_ray.report import EmptySweepError, build_report


def split_sweep_dir(sweep_dir: str) -> tuple[str, str]:
    """``runs/quickstart`` -> (``runs``, ``quickstart``); works for URIs too."""
    storage, _, sweep = sweep_dir.rstrip("/").rpartition("/")
    return storage or ".", sweep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcu_ray.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="the sweep folder <storage>/<sweep>, a path or pyarrow.fs URI")
    parser.add_argument("--out", help="folder for the figures and index.html (default: reports/<sweep>)")
    args = parser.parse_args(argv)
    storage, sweep = split_sweep_dir(args.sweep_dir)
    if not sweep:
        parser.error(f"{args.sweep_dir!r} does not name a sweep folder")
    try:
        index = build_report(storage, sweep, args.out or os.path.join("reports", sweep))
    except EmptySweepError as err:
        parser.error(str(err))
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
