"""``python -m mcu_ray.report STORAGE SWEEP --reproduce CELL_ID``: the sweep file and command that rebuild one cell.

The excerpt is the sweep file the sweep last ran with (``<storage>/<sweep>/spec.json``, every
default and hyper-parameter written out) cut to the cell's task, setting, methods, forget ratio
and seed; ``--only`` picks the cell among the (at most two) that the excerpt plans. The excerpt
is planned here again and must give the cell's key: an equal key means equal task options,
precision, hyper-parameters, curves and points, hence the same artifacts (``plan.content_key``).
Whether the same *code* computes them is provenance's part: the cell's artifacts and rows name
the commit that computed them, and a warning says when it is not this checkout's, or when either
tree was dirty. Run in a fresh storage folder, everything is computed anew; the rows then differ
from the stored ones in wall times and ``spec_hash`` (the hash of the sweep file, here the
excerpt) only, to float tolerance.
"""
from __future__ import annotations

import json
import shlex

import yaml

from mcu_ray import provenance
from mcu_ray.errors import did_you_mean
from mcu_ray.methods import METHODS
from mcu_ray.plan import Cell, Plan, knobs_from_dict, make_plan, options_from_dict
from mcu_ray.spec import (CurveFitSpec, ResourcesSpec, ScalingSpec, SweepSpec, TaskSpec, Tolerances, TrackingSpec,
                          parse_spec, resolved_sweep_file)
from mcu_ray.store import Store
from mcu_ray.tables import read_table


class ReproduceError(ValueError):
    """The cell cannot be rebuilt from what the sweep folder holds."""


def stored_spec(data: dict) -> SweepSpec:
    """The SweepSpec that ``spec.json`` holds (``spec_to_dict`` as JSON): its mappings back into dataclasses."""
    tasks = tuple(TaskSpec(**{**task, "curve_fit": CurveFitSpec(**task["curve_fit"]),
                              "options": options_from_dict(task["name"], task["options"]),
                              "hparams": {m: knobs_from_dict(m, h) for m, h in task["hparams"].items()}})
                  for task in data["tasks"])
    resources = ResourcesSpec(**{**data["resources"], "train": ScalingSpec(**data["resources"]["train"])})
    tracking = TrackingSpec(**data.get("tracking", {}))  # spec.json files older than tracking have none
    return SweepSpec(**{**data, "tasks": tasks, "tolerance": Tolerances(**data["tolerance"]), "resources": resources,
                        "tracking": tracking})


def find_cell(plan: Plan, cell_id: str) -> Cell:
    """The plan's cell ``cell_id`` (or the one cell whose key starts with it)."""
    cells = {cell.key: cell for cell in plan.cells}
    matches = [key for key in cells if key.startswith(cell_id)]
    if cell_id in cells or len(matches) == 1:
        return cells[cell_id if cell_id in cells else matches[0]]
    raise ReproduceError(f"--reproduce {cell_id}: {'several cells start with it' if matches else 'no such cell'} "
                         f"in the sweep's plan{did_you_mean(cell_id, cells)}; cell ids: the results table's cell_id, "
                         f"or `python -m mcu_ray.sweep FILE --dry-run`")


def methods_of(cell: Cell, plan: Plan) -> list[str]:
    """The cell's methods, each once, and the methods their pathways start from (whose knobs they need)."""
    methods = list(dict.fromkeys(plan.endpoints[key].method for key in (cell.endpoint_1, cell.endpoint_2)))
    return methods + [METHODS[m].source for m in methods if METHODS[m].source and METHODS[m].source not in methods]


def excerpt(spec: SweepSpec, plan: Plan, cell: Cell, storage: str) -> dict:
    """The resolved sweep file cut to one cell: its task, setting, methods, ratio and seed; ``storage``."""
    doc = resolved_sweep_file(spec)
    task = next(t for t in doc["tasks"] if t["name"] == cell.task)
    e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
    tuned = methods_of(cell, plan)
    task = {**task, "ratios": [cell.ratio], "methods": list(dict.fromkeys([e1.method, e2.method])),
            "settings": [cell.setting], "hparams": {m: task["hparams"][m] for m in tuned}}
    return {**doc, "storage": storage, "settings": [cell.setting], "seeds": [cell.seed], "tasks": [task]}


def only_filter(cell: Cell, plan: Plan) -> str:
    """The ``--only`` value that selects ``cell`` (python -m mcu_ray.sweep)."""
    e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
    ratio = f"{cell.ratio:g}" if float(f"{cell.ratio:g}") == cell.ratio else repr(cell.ratio)
    return f"task={cell.task},setting={cell.setting},method={e1.method}/{e2.method},ratio={ratio},seed={cell.seed}"


def check_excerpt(doc: dict, only: str, cell_id: str) -> None:
    """Plan the excerpt as the sweep command will, ``--only`` included: it must give exactly ``cell_id``."""
    from mcu_ray.sweep import parse_only, select

    plan = make_plan(parse_spec(doc))
    keys = [c.key for c in select(plan, parse_only([only], plan)).cells]
    if keys != [cell_id]:
        raise ReproduceError(f"the excerpt plans {keys} with --only {only}, not {cell_id}: a bug in "
                             f"mcu_ray.report.reproduce; please report it")


def cell_artifacts(cell: Cell, plan: Plan) -> dict[str, str]:
    """Every artifact the cell's rows come from: label -> key."""
    from mcu_ray.jobs import bend_key

    e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
    found = {f"original {e1.original}": e1.original, f"retrained {cell.retrained}": cell.retrained}
    for endpoint in (e1, e2):
        if endpoint.source:
            found[f"endpoint {endpoint.source}"] = endpoint.source
        found[f"endpoint {endpoint.key}"] = endpoint.key
    for kind, key in cell.curves:
        if plan.curves[key].trained:
            found[f"{kind} bend {bend_key(plan.curves[key])}"] = bend_key(plan.curves[key])
        found[f"{kind} curve points {key}"] = key
    return found


def computed_by(store: Store, sweep: str, cell: Cell, plan: Plan) -> dict[str, dict]:
    """What computed the cell so far: label -> provenance columns, for each stored artifact of the cell
    (its meta.json) and each distinct provenance among its result rows."""
    found = {}
    for label, key in cell_artifacts(cell, plan).items():
        if store.has_artifact(key):
            found[label] = provenance.columns(store.read_meta(key).get("provenance"))
    rows = read_table(store, sweep, "results").to_pandas()
    rows = rows[rows["cell_id"] == cell.key]
    fields = list(provenance.ROW_FIELDS)
    for i, (_, block) in enumerate(rows[fields].astype(object).drop_duplicates().iterrows()):
        found[f"results rows ({i + 1})" if i else "results rows"] = {
            k: (None if v != v else v) for k, v in block.items()}  # NaN (a missing value) -> None
    return found


def _code(block: dict) -> str:
    dirty = {True: "dirty", False: "clean", None: "dirty: unknown"}[block.get("code_dirty")]
    return f"mcu_ray {block.get('code_version')} at commit {block.get('code_commit')} ({dirty})"


def describe_block(block: dict) -> str:
    """One line: code, libraries, device."""
    libraries = ", ".join(f"{name} {block.get(f'{name}_version')}" for name in (*provenance.LIBRARIES, "python"))
    return f"{_code(block)}; {libraries}; {block.get('device_name')}"


def code_warnings(found: dict[str, dict], current: dict) -> list[str]:
    """Where the code that computed the cell is not this checkout's clean commit."""
    by_code: dict[tuple, list[str]] = {}
    for label, block in found.items():
        by_code.setdefault((block.get("code_commit") or provenance.UNKNOWN, block.get("code_dirty")), []).append(label)
    problems = []
    for (commit, dirty), labels in by_code.items():
        what = "every artifact and row of the cell" if len(labels) == len(found) else "; ".join(labels)
        if commit == provenance.UNKNOWN:
            problems.append(f"computed by code of unknown commit (its mcu_ray was not a git checkout): {what}")
        elif commit != current["code_commit"]:
            problems.append(f"computed at commit {commit}, this checkout is at {current['code_commit']} "
                            f"(`git checkout {commit}` rebuilds it with that code): {what}")
        if dirty:
            problems.append(f"computed from a dirty tree (uncommitted changes over {commit}; no commit holds that "
                            f"code, the rebuild may differ): {what}")
    if current["code_commit"] == provenance.UNKNOWN:
        problems.append("this mcu_ray is not a git checkout: the rebuild's code cannot be compared by commit")
    elif current["code_dirty"]:
        problems.append(f"this checkout has uncommitted changes under mcu_ray/ (over {current['code_commit']}): "
                        f"the rebuild runs code no commit holds")
    return problems


def reproduce(storage: str, sweep: str, cell_id: str) -> tuple[str, list[str]]:
    """(a sweep file with the command in its comments, the warnings): what rebuilds cell ``cell_id``."""
    from mcu_ray.sweep import ConfigDumper

    store = Store(storage)
    if not store.exists(sweep, "spec.json"):
        raise ReproduceError(f"no {storage}/{sweep}/spec.json: the sweep file of a run is saved there when it starts")
    stored = json.loads(store.read_bytes(sweep, "spec.json"))
    spec = stored_spec(stored["spec"])
    plan = make_plan(spec)
    try:
        cell = find_cell(plan, cell_id)
    except ReproduceError as missing:
        rows = read_table(store, sweep, "results").to_pandas()
        hashes = sorted(set(rows.loc[rows["cell_id"] == cell_id, "spec_hash"].dropna()))
        if not hashes:
            raise
        raise ReproduceError(f"cell {cell_id} has rows written by sweep file {', '.join(hashes)}, but the sweep "
                             f"last ran with {stored.get('spec_hash')}, which no longer plans it; rerun the sweep "
                             f"file that did, then --reproduce") from missing
    fresh = f"reproduce/{cell.key}"
    doc, only = excerpt(spec, plan, cell, fresh), only_filter(cell, plan)
    check_excerpt(doc, only, cell.key)
    found, current = computed_by(store, sweep, cell, plan), provenance.code()
    warnings = code_warnings(found, current)
    command = (f"python -m mcu_ray.sweep {cell.key}.yaml --storage {shlex.quote(fresh)} --only {shlex.quote(only)} "
               f"--no-report")
    e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
    header = [
        f"Rebuilds cell {cell.key} of sweep {sweep} ({store.uri}): {cell.task} {cell.setting} "
        f"{e1.method}/{e2.method}, forget ratio {cell.ratio:g} %, seed {cell.seed}.",
        f"The sweep file it ran with ({sweep}/spec.json, every default and hyper-parameter written out), cut to",
        "that cell; planned again, it gives the same cell key (so the same artifacts, computed anew).",
        "Computed by:" if found else "Not computed in this store yet.",
        *sorted({f"  {describe_block(block)}" for block in found.values()}),
        f"This checkout: {_code(current)}.",
        f"Save this output as {cell.key}.yaml and run, from the checkout of that commit:",
        f"  {command}",
        *(f"warning: {w}" for w in warnings),
    ]
    text = "".join(f"# {line}\n" for line in header)
    text += yaml.dump(doc, Dumper=ConfigDumper, sort_keys=False, width=120)
    return text, warnings
