"""Command line: draw the report of one sweep from its result tables.

    python -m mcu_ray.report mcu_runs/quickstart
    python -m mcu_ray.report mcu_runs quickstart --tolerance 0.05
    python -m mcu_ray.report s3://bucket/runs/full_grid --out reports/full_grid \
        --tolerance accuracy=0.02 --tolerance forget_quality=0.01
    python -m mcu_ray.report mcu_runs/quickstart --csv tables/csv --latex tables/tex
    python -m mcu_ray.report mcu_runs quickstart --reproduce cell-0123abcd > cell.yaml

The arguments are the sweep folder, <storage root>/<sweep name>, or the storage root and
the sweep name. Verdicts are decided from the stored deviations with the sweep file's
tolerances, or those given here: nothing is trained or evaluated again. Prints the path
of index.html; exits 2 when the folder holds no results (nor a search summary). --csv / --latex
also write every table (the stored ones whole, and those the page shows) as CSV / LaTeX
files (mcu_ray.report.files). ``--reproduce CELL_ID`` draws nothing:
it prints the sweep file (with the command in its comments) that rebuilds that cell, and warns
on stderr when the cell was computed by other code than this checkout's clean commit.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from mcu_ray.errors import SpecError
from mcu_ray.report import EmptySweepError, build_report
from mcu_ray.report.reproduce import ReproduceError, reproduce
from mcu_ray.spec import Tolerances, parse_tolerance


def split_sweep_dir(sweep_dir: str) -> tuple[str, str]:
    """``runs/quickstart`` -> (``runs``, ``quickstart``); works for URIs too."""
    storage, _, sweep = sweep_dir.rstrip("/").rpartition("/")
    return storage or ".", sweep


FAMILIES = tuple(f.name for f in dataclasses.fields(Tolerances))


def tolerance_overrides(values: list[str]) -> dict:
    """``["0.05", "accuracy=0.02"]`` -> ``{"loss": 0.05, "accuracy": 0.02}``; a bare number is the loss's."""
    found = {}
    for value in values:
        family, _, number = value.rpartition("=")
        family = family or "loss"
        if family not in FAMILIES:
            raise SpecError("--tolerance", value, f"families: {', '.join(FAMILIES)} (a bare number is loss)")
        try:
            found[family] = float(number)
        except ValueError:
            raise SpecError("--tolerance", value, "expected a number, or family=number") from None
    parse_tolerance(found, "--tolerance")  # each value in its family's range
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcu_ray.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="the sweep folder <storage>/<sweep>, a path or pyarrow.fs URI; or the "
                                          "storage root, followed by the sweep's name")
    parser.add_argument("sweep", nargs="?", help="the sweep's name, when the first argument is the storage root")
    parser.add_argument("--out", help="folder for the figures and index.html (default: reports/<sweep>)")
    parser.add_argument("--tolerance", action="append", default=[], metavar="[FAMILY=]VALUE",
                        help="re-decide every barrier with this tolerance: a number for the losses (nats; the MCU "
                             "verdict), or family=value for accuracy (absolute), score (absolute: ZRF, ROUGE, "
                             "probabilities, truth ratio, model utility) or forget_quality (a significance level); "
                             "repeatable; families not given keep the sweep file's")
    parser.add_argument("--reproduce", metavar="CELL_ID",
                        help="print, instead of drawing the report, the sweep file excerpt and the command that "
                             "rebuild this cell (its cell_id in the results table, or a unique prefix); warns when "
                             "it was computed at another commit or from a dirty tree")
    parser.add_argument("--csv", metavar="DIR", help="also write every table as DIR/<table>.csv: results, barriers, "
                                                     "verdicts, references, pathway (as mcu_ray.load reads them) "
                                                     "and each task's page tables")
    parser.add_argument("--latex", metavar="DIR", help="the same tables as DIR/<table>.tex (booktabs)")
    parser.add_argument("--workers", type=int, metavar="N", help="processes drawing figures (default: one per "
                                                                   "available CPU; 1: no extra process)")
    args = parser.parse_args(argv)
    storage, sweep = (args.sweep_dir, args.sweep) if args.sweep else split_sweep_dir(args.sweep_dir)
    if not sweep:
        parser.error(f"{args.sweep_dir!r} does not name a sweep folder")
    if args.reproduce:
        try:
            text, warnings = reproduce(storage, sweep, args.reproduce)
        except ReproduceError as err:
            parser.error(str(err))
        sys.stdout.write(text)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    try:
        overrides = tolerance_overrides(args.tolerance)
        if args.workers is not None and args.workers < 1:
            raise SpecError("--workers", args.workers, "expected an integer >= 1")
        index = build_report(storage, sweep, args.out or os.path.join("reports", sweep), overrides or None,
                             args.workers, args.csv, args.latex)
    except (EmptySweepError, SpecError) as err:
        parser.error(str(err))
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
