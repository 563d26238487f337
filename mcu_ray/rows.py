"""The rows of the sweep's tables, read from the store: no Ray, no training, no evaluation.

The runner schedules the jobs that build artifacts and evaluate points; everything a table row
holds is then read back from those artifacts here, so the rows (results, barriers, references,
pathway, examples) can be rebuilt and tested without Ray. Their Arrow schemas are in
``mcu_ray.tables``. Every row carries the provenance columns of the job that computed its
numbers (``traced``).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from mcu_ray import pathway_curve, provenance
from mcu_ray.barriers import curve_verdict, verdict_word
from mcu_ray.jobs import bend_key, examples_key, t_grid
from mcu_ray.plan import Cell, Curve, Endpoint, Plan
from mcu_ray.spec import SweepSpec
from mcu_ray.store import Store
from mcu_ray.tasks import TASKS


def mean_gap(metrics: dict, targets: dict, names) -> float:
    """The mean absolute gap of ``metrics`` to ``targets`` over ``names`` (the report's yardstick, to the
    retrained model)."""
    return float(np.mean([abs(metrics[m] - targets[m]) for m in names]))


def pathway_rows(store: Store, item: Endpoint, source_method: str) -> list[dict]:
    """A pathway endpoint beside the original, its source endpoint and the retrained model, with
    each one's mean gap to the retrained model on the task's ``gap_metrics`` (the report's
    comparison, out of sample: t* was chosen without the retrained model), and the evaluated points
    of its curve (model "curve", with t). ``selection_gap``: the gap t* was chosen on (mean
    |accuracy - the original's target| on Df and Dr), where it was measured (curve points, so the
    original at t=0 and the source at t=1, and the pathway model); NaN for the retrained model.
    Each row has the provenance columns of the job that evaluated it (the pathway's for its curve)."""
    meta, source, reference = (store.read_meta(key) for key in (item.key, item.source, item.retrained))
    chosen = meta["pathway"]
    targets = reference["metrics"]
    names = chosen["gap_metrics"]
    ident = {"task": item.task, "ratio": item.ratio, "seed": item.seed, "method": item.method,
             "source_method": source_method, "optimizer": item.optimizer, "curriculum": item.curriculum,
             "endpoint": item.key, "t_star": chosen["t_star"]}
    curve = store.load_points(item.key).to_pylist()  # the points t* was chosen from; t=0 is the original
    selection = chosen["selection"]
    along = [pathway_curve.selection_gap({n: selection[n][i] for n in pathway_curve.SELECTION_SPLITS}, chosen["targets"])
             for i in range(len(curve))]
    models = (("original", {k: v for k, v in curve[0].items() if k != "t"}, along[0], meta),
              ("source", source["metrics"], along[-1], source),
              ("pathway", meta["metrics"], chosen["selection_gap"], meta),
              ("retrained", targets, float("nan"), reference))
    rows = [{**ident, "model": model, "t": float("nan"), "gap_to_retrained": mean_gap(metrics, targets, names),
             "selection_gap": gap, **metrics, **traced(by)} for model, metrics, gap, by in models]
    return rows + [{**ident, "model": "curve", "gap_to_retrained": mean_gap(point, targets, names),
                    "selection_gap": gap, **point, **traced(meta)} for point, gap in zip(curve, along)]



def model_examples(store: Store, key: str, identity: dict) -> list[tuple[dict, pa.Table]]:
    """A stored model's per-example values as a part of the examples table (``tables.write_examples``):
    under ``identity`` and the provenance of the job that evaluated it; none when it has none (a failed
    model, or one built before they were stored)."""
    if not store.has_artifact(key):
        return []
    values = store.load_examples(key)
    return [] if values is None else [({**identity, **traced(store.read_meta(key))}, values)]


def endpoint_examples(store: Store, endpoint: Endpoint) -> list[tuple[dict, pa.Table]]:
    """An endpoint's examples-table rows (t NaN)."""
    return model_examples(store, endpoint.key, {
        "task": endpoint.task, "ratio": endpoint.ratio, "precision": endpoint.precision, "model": "endpoint",
        "key": endpoint.key, "method": endpoint.method, "optimizer": endpoint.optimizer,
        "curriculum": endpoint.curriculum, "seed": endpoint.seed})


def curve_examples(store: Store, curve: Curve) -> list[tuple[dict, pa.Table]]:
    """Every evaluated point of a curve in the examples table, in the curve's own orientation: t = 0 and
    t = 1 the endpoints' own rows (as ``curve_rows``), the interior the ``examples_key`` artifact's."""
    identity = {"task": curve.task, "ratio": curve.ratio, "precision": curve.precision, "model": "curve",
                "key": curve.key, "curve": curve.kind, "endpoint_1": curve.endpoint_1, "endpoint_2": curve.endpoint_2}
    return [*model_examples(store, curve.endpoint_1, {**identity, "t": 0.0}),
            *model_examples(store, examples_key(curve), identity),
            *model_examples(store, curve.endpoint_2, {**identity, "t": 1.0})]



def traced(meta: dict) -> dict:
    """The provenance columns of a row whose values an artifact's job computed (``meta``: its meta.json)."""
    return provenance.columns(meta.get("provenance"))


def curve_rows(store: Store, curve: Curve, first_endpoint: str) -> list[dict]:
    """Every evaluated point of a curve, oriented so that t=0 is ``first_endpoint``.

    t=0 and t=1 come from the endpoints' own evaluations (same BatchNorm
    re-estimation), the interior from the curve's stored points; each row with the provenance
    columns of the artifact whose job evaluated it.
    """
    start, inside, end = (store.read_meta(key) for key in (curve.endpoint_1, curve.key, curve.endpoint_2))
    rows = [{"t": 0.0, **start["metrics"], **traced(start)},
            *({**point, **traced(inside)} for point in store.load_points(curve.key).to_pylist()),
            {"t": 1.0, **end["metrics"], **traced(end)}]
    if first_endpoint != curve.endpoint_1:  # a shared linear curve stored the other way round
        rows = [{**r, "t": 1.0 - r["t"]} for r in reversed(rows)]
    return rows



def cell_rows(plan: Plan, spec: SweepSpec, spec_hash: str, store: Store, cell: Cell) -> tuple[list, list, dict]:
    """Rows (one per curve and t) and barrier rows (one per curve and metric) of a cell.

    Barrier rows hold deviations only; verdicts are drawn from them when read (``mcu_ray.tables``),
    so the tolerance plays no part here but in the summary printed on the console. A row's
    provenance is that of the job that computed its numbers: the evaluating artifact's for a point
    (``curve_rows``), this process's (on its CPU) for deviations and for a failed cell's NaNs.
    """
    task = TASKS[cell.task]
    e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
    ident = {"sweep": spec.name, "spec_hash": spec_hash, "cell_id": cell.key,
             "task": cell.task, "setting": cell.setting, "method_1": e1.method, "method_2": e2.method,
             "optimizer_1": e1.optimizer, "optimizer_2": e2.optimizer, "curriculum_1": e1.curriculum,
             "curriculum_2": e2.curriculum, "ratio": cell.ratio, "seed": cell.seed,
             "endpoint_1": e1.key, "endpoint_2": e2.key, "seed_1": e1.seed, "seed_2": e2.seed,
             "precision": e1.precision, **provenance.columns(provenance.describe("cpu"))}
    rows, barrier_rows, summary = [], [], {}
    for kind, key in cell.curves:
        curve = plan.curves[key]
        problem = store.first_failed(e1.original, cell.retrained, curve.endpoint_1, curve.endpoint_2,
                                     *([bend_key(curve)] if curve.trained else []))
        if problem:  # recorded, not dropped: the report shows the cell as failed
            nan = {m: float("nan") for m in task.metric_directions}
            rows += [{**ident, "curve": kind, "curve_key": key, "t": round(float(t), 6), **nan, "status": "diverged",
                      "reason": str(problem)} for t in t_grid(spec.points)]
            barrier_rows += [{**ident, "curve": kind, "curve_key": key, "metric": m, "status": "diverged",
                              "reason": str(problem)} for m in nan]
            summary |= {f"mcu_{kind}": None, f"status_{kind}": "diverged"}
            continue
        points = curve_rows(store, curve, cell.endpoint_1)
        length = store.read_meta(key).get("length", float("nan"))  # in parameter space
        verdict = curve_verdict(points, task.metric_directions, task.retain_loss, task.forget_loss,
                                spec.tolerance.loss)
        for point in points:
            rows.append({**ident, "curve": kind, "curve_key": key, **point, "t": round(point["t"], 6), "status": "ok",
                         "reason": ""})
        for m in verdict.metrics:
            barrier_rows.append({**ident, "curve": kind, "curve_key": key, "metric": m.metric,
                                 "deviation": m.deviation, "argmax_t": m.argmax_t, "min": m.minimum,
                                 "max": m.maximum, "mean": m.mean, "start": m.start, "end": m.end,
                                 "integral": m.integral, "curve_length": length, "status": "ok", "reason": ""})
        summary |= {f"mcu_{kind}": verdict.mcu, f"retain_barrier_{kind}": verdict.retain_barrier,
                    f"forget_barrier_{kind}": verdict.forget_barrier,
                    f"verdict_{kind}": verdict_word(verdict.retain_barrier, verdict.forget_barrier, spec.tolerance.loss)}
    return rows, barrier_rows, summary


def reference_rows(sweep: str, spec_hash: str, store: Store, original, retrained, original_row: dict,
                   original_examples: pa.Table | None) -> tuple[list[dict], list]:
    """The original and the retrained model at one ratio: their references rows and their examples
    parts. ``original_row``/``original_examples``: the original evaluated on this ratio's splits (with
    its evaluating job's provenance columns); the retrained model's come from its artifact."""
    ident = {"sweep": sweep, "spec_hash": spec_hash, "task": retrained.task, "ratio": retrained.ratio,
             "precision": retrained.precision}
    meta = store.read_meta(retrained.key)
    rows = [{**ident, "model": "original", "key": original.key, **original_row},
            {**ident, "model": "retrained", "key": retrained.key, **meta["metrics"], **traced(meta)}]
    traced_original = {name: original_row[name] for name in provenance.ROW_FIELDS}
    parts = [({**ident, "model": "original", "key": original.key, **traced_original}, original_examples),
             *model_examples(store, retrained.key, {**ident, "model": "retrained", "key": retrained.key})]
    return rows, parts
