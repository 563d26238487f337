"""Command line: plan a sweep file, run (or resume) its grid on Ray, draw its figures.

    python -m mcu_ray.sweep sweeps/quickstart.yaml
    python -m mcu_ray.sweep sweeps/quickstart.yaml --dry-run            # every cell: done or pending
    python -m mcu_ray.sweep sweeps/quickstart.yaml --print-config       # every default and knob
    python -m mcu_ray.sweep sweeps/full_grid.yaml --dry-run --estimate
    python -m mcu_ray.sweep sweeps/quickstart.yaml --set tolerance=0.05 --set tasks.0.ratios=[2]
    python -m mcu_ray.sweep sweeps/full_grid.yaml --only task=tofu,setting=Met
    python -m mcu_ray.sweep sweeps/quickstart.yaml --per-example        # per-example values along the curves too

Rerunning the same command resumes: cells with results are skipped and every
artifact already in the store is reused. A changed ``tolerance`` needs no rerun of
anything: the report draws every verdict from the stored deviations with it. (Also ``mcu-ray sweep ...``.)

Every endpoint, original and retrained model's per-example values go to the ``examples`` table;
``--per-example`` adds those of every curve point, from the same passes as their metrics. It changes no
key: rerun on a finished sweep, it trains nothing and keeps every result, and evaluates only the
interior points of the curves that lack per-example values once more, for those values alone.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import yaml

from mcu_ray.driver import check_storage, fail, fail_all, quiet_ray, start_ray
from mcu_ray.errors import FAILED, Problems, SpecError, did_you_mean, spec_errors
from mcu_ray.spec import load_spec, resolved_sweep_file, spec_to_dict

ONLY_KEYS = ("task", "setting", "method", "ratio", "seed")  # what --only can select cells by


def parse_args(argv=None, prog: str = "python -m mcu_ray.sweep") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="sweep YAML file (see sweeps/)")
    parser.add_argument("--storage", help="storage root, a path or pyarrow.fs URI (default: the spec's, ./mcu_runs)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (its counts, then every cell per task x setting, done or pending "
                             "in --storage) and exit; starts no Ray")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print one JSON object instead")
    parser.add_argument("--estimate", action="store_true",
                        help="with --dry-run: also print the expected device-hours per job kind (original, "
                             "retrained, endpoint, bend, evaluation) and in total, priced by a short calibration on "
                             "this machine's default device (CUDA if present, else the CPU); artifacts already in "
                             "the storage count as done; never downloads (hub models: a FLOP model, assumptions "
                             "listed)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved sweep file (every default and hyper-parameter written out, after "
                             "--set) as YAML and exit; it can be run as it is")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a field of the sweep file before it is checked: a dotted path, list entries "
                             "by index, the value read as YAML (tolerance=0.05, tasks.0.ratios=[2], "
                             "tasks.0.hparams.ga.lr=1e-4); repeatable")
    parser.add_argument("--only", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE...]",
                        help="run (or list) only the cells matching every KEY=VALUE, keys task, setting, method "
                             "(ga: either endpoint; ga/rl: that ordered pair), ratio, seed; repeated: cells "
                             "matching any of them (--only setting=Rand --only setting=Met)")
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's and Tune's start-up messages and the workers' output (quiet by default: "
                             "one line per finished cell)")
    parser.add_argument("--report-dir", help="where figures go (default: reports/<sweep name>)")
    parser.add_argument("--no-report", action="store_true", help="skip drawing figures at the end")
    parser.add_argument("--per-example", action="store_true",
                        help="also store the per-example values (losses, predictions, truth ratios, generated answers, "
                             "attack scores) of every curve point in the examples table (the models' are always "
                             "stored); on a finished sweep it evaluates only the curve points that lack them, again, "
                             "and trains nothing")
    parser.add_argument("--restart", action="store_true",
                        help="start this sweep over: drop its result tables (shared artifacts are kept and reused)")
    parser.add_argument("--search-db", metavar="URL",
                        help="with a search: section, the SQLAlchemy URL of its Optuna studies (default: the file's "
                             "search.db, else sqlite:///<storage>/<sweep>/search/studies.db); several drivers may "
                             "share one PostgreSQL study")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: RAY_ADDRESS, else a new local Ray instance)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a new local Ray instance")
    return parser.parse_args(argv)


def flag_problems(args: argparse.Namespace) -> list[str]:
    """Combinations of flags that cannot mean what they say (all of them, not only the first)."""
    problems = []
    if args.json and not args.dry_run:
        problems.append("--json: works with --dry-run only (without --dry-run the sweep would run); add --dry-run")
    if args.estimate and not args.dry_run:
        problems.append("--estimate: works with --dry-run only (it prices the sweep before anything runs); "
                        "add --dry-run")
    if args.print_config and args.dry_run:
        problems.append("--print-config: prints the resolved sweep file and exits; use it without --dry-run")
    if args.restart and args.only:
        problems.append("--restart: drops every result table of the sweep, not only the --only cells; "
                        "run it without --only")
    return problems


def check_tracking(spec, storage: str) -> str:
    """Where the sweep's ``tracking`` writes (a tracking URI or a log folder; "" when off); a SpecError
    naming ``tracking`` before any work when it cannot: MLflow not installed, no local default place."""
    if spec.tracking.kind == "none":
        return ""
    if spec.tracking.kind == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise SpecError("tracking", spec.tracking.kind, 'MLflow is not installed here: pip install "mcu_ray[tracking]" '
                                                        '(or pip install mlflow-skinny), or track with tensorboard')
    return spec.tracking.location(storage, spec.name)


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


# ----------------------------------------------------------------------------- --only


def cell_fields(cell, plan) -> dict:
    """What ``--only`` and ``--dry-run`` say about a cell."""
    e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
    return {"key": cell.key, "task": cell.task, "setting": cell.setting, "method_1": e1.method,
            "method_2": e2.method, "ratio": cell.ratio, "seed": cell.seed}


def plan_record(plan) -> dict:
    """What ``spec.json`` keeps of the whole plan: the keys of its cells, reference models and
    pathway endpoints (the report shows only these rows), and each cell's fields and artifacts
    (the report lists planned cells that have no rows, with the failure an artifact recorded)."""
    from mcu_ray.jobs import bend_key

    def artifacts(cell) -> list[str]:
        curves = [plan.curves[key] for _, key in cell.curves]
        return [plan.endpoints[cell.endpoint_1].original, cell.retrained, cell.endpoint_1, cell.endpoint_2,
                *(bend_key(c) for c in curves if c.trained), *(c.key for c in curves)]

    return {"cells": [c.key for c in plan.cells], "models": [*plan.originals, *plan.retrained],
            "pathway": [e.key for e in plan.endpoints.values() if e.source],
            "cell_list": [{**cell_fields(c, plan), "artifacts": artifacts(c)} for c in plan.cells]}


def parse_only(texts: list[str], plan) -> list[dict]:
    """``--only`` values -> one {key: value} condition per flag, each value checked against the plan's cells.

    Raises SpecError (SpecErrors for several) naming the filter, the value and what this sweep has.
    """
    if not texts:
        return []
    cells = [cell_fields(c, plan) for c in plan.cells]
    has = {"task": sorted({c["task"] for c in cells}), "setting": sorted({c["setting"] for c in cells}),
           "method": sorted({c[m] for c in cells for m in ("method_1", "method_2")}),
           "ratio": sorted({c["ratio"] for c in cells}), "seed": sorted({c["seed"] for c in cells})}
    problems, conditions = Problems(), []
    for text in texts:
        condition = {}
        for part in text.split(","):
            key, eq, value = (s.strip() for s in part.partition("="))
            if not eq or key not in ONLY_KEYS:
                problems.errors.append(SpecError("--only", part, f"expected KEY=VALUE with KEY one of "
                                                                 f"{', '.join(ONLY_KEYS)}{did_you_mean(key, ONLY_KEYS)}"))
                continue
            value = problems.attempt(_only_value, key, value, has[key])
            if value is not FAILED:
                condition[key] = value
        conditions.append(condition)
    problems.raise_any()
    if not any(only_matches(c, condition) for c in cells for condition in conditions):
        raise SpecError("--only", " ".join(texts), "selects no cell of this sweep (each filter matches some cells, "
                                                   "all of them together none)")
    return conditions


def _only_value(key: str, text: str, allowed: list):
    """One --only value as the cells hold it (ratio a float, seed an int, method a name or a pair)."""
    def refuse(word=text):
        shown = ", ".join(f"{a:g}" if isinstance(a, float) else str(a) for a in allowed)
        return SpecError(f"--only {key}", text, f"not in this sweep{did_you_mean(word, map(str, allowed))}; "
                                                f"it has: {shown}")
    if key == "method":  # ga (either endpoint) or ga/rl (that ordered pair)
        names = text.split("/")
        unknown = [n for n in names if n not in allowed]
        if len(names) > 2 or unknown:
            raise refuse(unknown[0] if unknown else text)
        return tuple(names)
    if key in ("ratio", "seed"):
        try:
            value = float(text) if key == "ratio" else int(text)
        except ValueError:
            raise refuse() from None
    else:
        value = text
    if value not in allowed:
        raise refuse()
    return value


def only_matches(cell: dict, condition: dict) -> bool:
    for key, value in condition.items():
        if key == "method":
            pair = (cell["method_1"], cell["method_2"])
            if (len(value) == 1 and value[0] not in pair) or (len(value) == 2 and value != pair):
                return False
        elif cell[key] != value:
            return False
    return True


def planned(spec, only: list[str]):
    """(the whole plan, the --only cells' plan); a bad --only exits 2."""
    from mcu_ray.plan import make_plan

    full_plan = make_plan(spec)
    try:
        return full_plan, select(full_plan, parse_only(only, full_plan))
    except SpecError as exc:
        fail_all([str(e) for e in spec_errors(exc)])


def select(plan, conditions: list[dict]):
    """The plan of the cells matching any condition (all cells without any)."""
    if not conditions:
        return plan
    return plan.subset([c for c in plan.cells if any(only_matches(cell_fields(c, plan), x) for x in conditions)])


# ----------------------------------------------------------------------------- --dry-run


def cell_status(spec, plan, storage: str, per_example: bool = False) -> list[dict]:
    """Every cell with ``status`` done or pending; nothing is run or written.

    Done is what ``runner.run_grid`` skips (``Store.cell_done``): with ``per_example``, a cell whose
    curves' per-example values are missing is pending.
    """
    from mcu_ray.store import Store

    try:
        store = Store(storage)
        done = {c.key for c in plan.cells
                if store.cell_done(spec.name, c.key, [key for _, key in c.curves] if per_example else ())}
    except Exception as exc:  # noqa: BLE001 - an unreadable storage must not stop a dry run
        print(f"warning: cannot read {storage} ({type(exc).__name__}: {exc}); cells shown as unknown",
              file=sys.stderr)
        return [{**cell_fields(c, plan), "status": "unknown"} for c in plan.cells]
    return [{**cell_fields(c, plan), "status": "done" if c.key in done else "pending"} for c in plan.cells]


def tally(cells: list[dict]) -> str:
    """``2 done, 1 pending`` (and unknown when the storage could not be read)."""
    counts = {s: sum(c["status"] == s for c in cells) for s in ("done", "pending", "unknown")}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "unknown")


def format_cells(cells: list[dict]) -> str:
    """Cells grouped per task x setting, one line each."""
    groups: dict = {}
    for cell in cells:
        groups.setdefault((cell["task"], cell["setting"]), []).append(cell)
    lines = []
    for (task, setting), group in groups.items():
        lines.append(f"{task} {setting}: {len(group)} cell{'s' * (len(group) != 1)}, {tally(group)}")
        for c in group:
            methods = f"{c['method_1']}/{c['method_2']}"
            lines.append(f"  {c['status']:<8} {methods:<13} ratio={c['ratio']:g}% seed={c['seed']}  {c['key']}")
    return "\n".join(lines)


def dry_run(args, spec, plan, storage: str) -> int:
    cost = estimate_or_fail(args.spec, spec, plan, storage) if args.estimate else None
    cells = cell_status(spec, plan, storage, args.per_example)
    counts = plan.counts()
    if args.json:
        status = {s: sum(c["status"] == s for c in cells) for s in ("done", "pending")}
        print(json.dumps({"sweep": spec.name, **counts, "storage": storage, **status, "cell_list": cells,
                          **({"estimate": cost} if cost else {})}))
        return 0
    print(f"sweep {spec.name}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    print(f"cells in {storage}: {tally(cells)}")
    print(format_cells(cells))
    if cost:
        from mcu_ray.estimate import format_estimate

        print(format_estimate(spec.name, cost))
    return 0


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


# ----------------------------------------------------------------------------- --print-config


class ConfigDumper(yaml.SafeDumper):
    """Mappings as blocks, lists of values on one line (``ratios: [2.0, 10.0]``), as the sweep files write them."""


ConfigDumper.add_representer(list, lambda dumper, items: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", items, flow_style=not any(isinstance(i, (dict, list)) for i in items)))


# ----------------------------------------------------------------------------- main


def main(argv=None, prog: str = "python -m mcu_ray.sweep") -> int:
    args = parse_args(argv, prog)
    problems = flag_problems(args)
    try:
        spec = load_spec(args.spec, args.overrides)
    except SpecError as exc:
        fail_all(problems + [f"{args.spec}: {e}" for e in spec_errors(exc)])
    if problems:
        fail_all(problems)
    if args.print_config:
        note = "".join(f" --set {o}" for o in args.overrides)
        print(f"# {args.spec}{note}, resolved: every default and hyper-parameter written out.\n"
              f"# A sweep file itself: run as it is, it plans the same cells.")
        print(yaml.dump(resolved_sweep_file(spec), Dumper=ConfigDumper, sort_keys=False, width=120), end="")
        return 0
    storage = args.storage or spec.storage
    searched, notes = spec, []
    if spec.search:  # the grid trains searched methods with the chosen values (once the search has them)
        from mcu_ray.search import apply_chosen, read_summary
        from mcu_ray.store import Store

        spec, notes = apply_chosen(spec, read_summary(Store(storage), spec.name))
    full_plan, plan = planned(spec, args.only)
    if args.dry_run:
        for note in notes:
            print(f"search: {note}")
        return dry_run(args, spec, plan, storage)
    try:
        tracked = check_tracking(spec, storage)
        check_storage(storage)
        if searched.search:
            from mcu_ray.search import database

            search_db = database(searched, storage, args.search_db)
    except SpecError as exc:
        fail(f"{args.spec}: {exc}")

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet_ray(args.verbose)
    import ray

    from mcu_ray.runner import run_grid, spec_hash
    from mcu_ray.store import Store
    from mcu_ray.tables import TABLES, upgrade_layout

    started = time.time()
    local = not ray.is_initialized() and not (args.address or os.environ.get("RAY_ADDRESS"))
    if not ray.is_initialized():
        start_ray(args.address, args.num_cpus, spec.resources, args.verbose)
    try:
        check_gpus(spec, ray.cluster_resources().get("GPU", 0), local)
    except SpecError as exc:
        ray.shutdown()
        fail(f"{args.spec}: {exc}")
    if searched.search:
        from mcu_ray.search import SearchFailed, run_search

        try:
            spec, summary = run_search(searched, storage, search_db)
            for note in apply_chosen(searched, summary)[1]:  # which study's values each searched method takes
                print(f"search: {note}", flush=True)
        except SearchFailed as exc:
            ray.shutdown()
            fail(str(exc), code=1)
        except BaseException:
            ray.shutdown()
            raise
        full_plan, plan = planned(spec, args.only)
    counts = plan.counts()
    subset = f" (--only: {len(plan.cells)} of {len(full_plan.cells)} cells)" if args.only else ""
    print(f"sweep {spec.name}: {counts['cells']} cells, {counts['endpoints']} endpoints, {counts['curves']} curves, "
          f"{counts['training_jobs']} training jobs, {counts['evaluations']} evaluations -> {storage}{subset}",
          flush=True)
    if tracked:
        print(f"tracking every cell with {spec.tracking.kind}: {tracked}", flush=True)
    # the plan's keys tell the report which stored rows are this version's (an edited sweep
    # keeps the rows of cells it dropped: nothing computed is deleted, nothing stale is shown);
    # the whole plan's, so that --only runs add up to the sweep's report
    Store(storage).write_bytes(json.dumps({"spec": spec_to_dict(spec), "spec_hash": spec_hash(spec),
                                           "plan": plan_record(full_plan)},
                                          indent=1, default=str).encode(), spec.name, "spec.json")
    if args.restart:
        for table in (*TABLES, "tune"):
            Store(storage).delete_dir(spec.name, table)
        print(f"--restart: dropped the result tables of {spec.name}", flush=True)
    elif upgrade_layout(Store(storage), spec.name):  # tables written before the flat layout
        print(f"moved {spec.name}'s result tables out of their task=/setting= folders (one schema per table)",
              flush=True)
    try:
        outcome = run_grid(spec, plan, storage, per_example=args.per_example)
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
