"""One function per artifact: read inputs from the store, run a plain loop, write the result.

These are what Ray Train jobs and Ray tasks execute (see ``runner``), but they use no
Ray themselves, so tests can call them directly. Each builder records itself in the
store's job ledger before it starts, which is how "trained exactly once" is counted.

Every builder takes the ``Placement`` of its process (default: CUDA when present) and
computes at its artifact's precision. In a data-parallel job every worker runs the
builder on its shard of each batch; only rank 0 records, evaluates and writes.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from functools import lru_cache

import numpy as np
import pyarrow as pa
import torch

from mcu_ray import pathway
from mcu_ray.curves import curve_parameters, load_point, load_state, savable_state
from mcu_ray.evaluate import eval_context, evaluate_curve_points, evaluate_model, evaluate_state, task_data
from mcu_ray.methods import METHODS
from mcu_ray.placement import Placement
from mcu_ray.plan import Curve, Endpoint, Original, Retrained
from mcu_ray.spec import CurveFitSpec
from mcu_ray.store import Store
from mcu_ray.tasks import TASKS
from mcu_ray.methods.curriculum import needs_original_losses
from mcu_ray.train import DivergedError, Teachers, fit_bezier_bend, frozen_copy, train_supervised, unlearn


def failure(store: Store, *keys: str) -> str:
    """The first of ``keys`` whose artifact recorded a failure, as 'key: reason'; '' if none."""
    for key in keys:
        meta = store.read_meta(key) if store.has_artifact(key) else {}
        if meta.get("status", "ok") != "ok":
            return f"{key} {meta['status']}: {meta.get('reason', '')}"
    return ""


def _diverged(store: Store, key: str, item, exc: DivergedError, placement: Placement) -> dict | None:
    """Record a diverged training run (rank 0): no weights, a status and the reason, so the grid goes on."""
    if not placement.writes:
        return None
    return store.save_artifact(key, {"kind": type(item).__name__.lower(), "item": asdict(item),
                                     "status": "diverged", "reason": str(exc)})


def t_grid(points: int) -> np.ndarray:
    """The evaluated t values: ``points`` equally spaced in [0, 1]."""
    return np.linspace(0.0, 1.0, points)


def placed(placement: Placement | None, item) -> Placement:
    """The process's placement (default: CUDA when present) at the artifact's precision."""
    return (placement or Placement()).with_precision(item.precision)


def start_job(store: Store, key: str, kind: str, item, placement: Placement | None) -> Placement:
    """The job's placement at the artifact's precision; rank 0 records the job in the ledger."""
    placement = placed(placement, item)
    if placement.writes:
        store.record_job(key, kind)
    return placement


def job_meta(kind: str, item, log: dict, seconds: float, placement: Placement, batch_size: int) -> dict:
    """What every trained artifact records about how it was computed."""
    return {"kind": kind, "item": asdict(item), "train_log": log, "train_seconds": seconds,
            "device": placement.device.type, "precision": placement.precision, "workers": placement.world_size,
            "grad_accum": placement.grad_accum, "effective_batch": batch_size}


def _supervised(store: Store, item, split: str, ratio: float, placement: Placement) -> dict | None:
    task, options, data = task_data(item.task, item.options, ratio)
    opts = task.Options(**options)
    reference = getattr(opts, "reference_model", "") if isinstance(item, Retrained) else ""
    if reference:  # a published retain-only model: used as it is
        model = task.new_model({**options, "model": reference}, seed=opts.model_seed, placement=placement)
        started, log = time.time(), {"steps": 0, "loaded": reference}
    else:
        model = task.new_model(options, seed=opts.model_seed, placement=placement)
        started = time.time()
        try:
            log = train_supervised(model, task, data.split(split), epochs=opts.epochs, lr=opts.lr,
                                   batch_size=opts.batch_size, weight_decay=opts.weight_decay, seed=opts.model_seed,
                                   placement=placement)
        except DivergedError as exc:
            return _diverged(store, item.key, item, exc, placement)
    seconds = time.time() - started
    if not placement.writes:
        return None
    meta = job_meta(type(item).__name__.lower(), item, log, seconds, placement, opts.batch_size)
    if isinstance(item, Retrained):  # its own reference: TOFU's Forget Quality is 1 by definition
        context = task.eval_context(options, data, savable_state(model), placement)
        meta["metrics"] = task.evaluate(model, options, data, context, placement)
    return store.save_artifact(item.key, meta, weights=savable_state(model))


def build_original(store: Store, item: Original, placement: Placement | None = None) -> dict | None:
    """The model everything unlearns from: trained on all of D (ratio is irrelevant here)."""
    placement = start_job(store, item.key, "original", item, placement)
    return _supervised(store, item, "train", ratio=1.0, placement=placement)  # D does not depend on the ratio


def build_retrained(store: Store, item: Retrained, placement: Placement | None = None) -> dict | None:
    """The gold standard for one forget ratio: trained from scratch on Dr."""
    placement = start_job(store, item.key, "retrained", item, placement)
    return _supervised(store, item, "retain", ratio=item.ratio, placement=placement)


def teachers(task, options: dict, method: str, original_state, placement: Placement,
             curriculum_params: dict | None = None) -> Teachers:
    """The frozen models ``method`` (and an ordering curriculum) consult, on the device; only those it needs.

    ``original_state()`` gives the original's weights: read only when a teacher needs them.
    """
    spec = METHODS[method]
    original = random = None
    if spec.uses_reference or needs_original_losses("cl" if curriculum_params else "none", curriculum_params):
        original = task.new_model(options, seed=0, placement=placement)
        load_state(original, original_state())
        original = frozen_copy(original)
    if spec.uses_random_teacher:
        random = frozen_copy(task.new_model(options, seed=task.Options(**options).model_seed + 7919,
                                            placement=placement))
    return Teachers(original, random)


def build_endpoint(store: Store, item: Endpoint, placement: Placement | None = None) -> dict | None:
    """Unlearn the original with one method/optimiser/curriculum/seed; evaluate the result."""
    placement = start_job(store, item.key, "endpoint", item, placement)
    if item.source:
        return build_pathway(store, item, placement)
    task, options, data = task_data(item.task, item.options, item.ratio)
    model = task.new_model(options, seed=0, placement=placement)
    original = store.load_weights(item.original)  # read once: the starting point and, if needed, a teacher
    load_state(model, original)
    params = METHODS[item.method].Params(**item.hparams)
    frozen = teachers(task, options, item.method, lambda: original, placement, item.curriculum_params)
    started = time.time()  # train_seconds: the loop alone, not model building or evaluation
    try:
        log = unlearn(model, task, data, item.method, params, optimizer=item.optimizer,
                      optimizer_params=item.optimizer_params, curriculum=item.curriculum,
                      curriculum_params=item.curriculum_params, seed=item.seed, placement=placement, teachers=frozen)
    except DivergedError as exc:
        return _diverged(store, item.key, item, exc, placement)
    seconds = time.time() - started
    if not placement.writes:
        return None
    context = eval_context(item.task, options, item.ratio, (store.uri, item.reference), placement)
    meta = {**job_meta("endpoint", item, log, seconds, placement, params.batch_size),
            "metrics": evaluate_model(model, item.task, options, item.ratio, context, placement)}
    return store.save_artifact(item.key, meta, weights=savable_state(model))


def build_pathway(store: Store, item: Endpoint, placement: Placement) -> dict | None:
    """Pathway unlearning: the point t* of a trained curve original -> source endpoint.

    The curve is evaluated at ``select_points`` values of t; t* minimises the mean gap to
    the retrained model on the task's selection metrics, interpolated between points (if
    phi(t*) evaluates worse than the best evaluated point, that point is taken instead),
    and phi(t*) is stored as an ordinary endpoint, its curve's points beside it.
    """
    problem = failure(store, item.source)
    if problem:
        return _diverged(store, item.key, item, DivergedError(f"source endpoint {problem}"), placement)
    task, options, data = task_data(item.task, item.options, item.ratio)
    model = task.new_model(options, seed=0, placement=placement)
    original, source = store.load_weights(item.original), store.load_weights(item.source)
    load_state(model, original)
    params = METHODS[item.method].Params(**item.hparams)
    started = time.time()
    try:
        bend, log = pathway.fit_pathway_bend(model, source, task, data, params, seed=item.seed, placement=placement)
    except DivergedError as exc:
        return _diverged(store, item.key, item, exc, placement)
    seconds = time.time() - started  # the curve's fit; its evaluation and the choice of t* follow
    if not placement.writes:
        return None
    curve = curve_parameters(model)
    cps = [placement.tensors({n: cp[n] for n in curve}) for cp in (original, bend, source)]
    context = eval_context(item.task, options, item.ratio, (store.uri, item.reference), placement)

    def evaluate_at(t: float) -> dict:
        """phi(t) loaded into ``model`` (BatchNorm re-estimated on Dr, as it is then saved) and its metrics."""
        load_point(model, cps, t)
        return evaluate_model(model, item.task, options, item.ratio, context, placement)

    rows = [{"t": float(t), **evaluate_at(float(t))} for t in t_grid(params.select_points)]
    targets, names = store.read_meta(item.reference)["metrics"], task.selection_metrics
    try:
        t_interpolated, predicted_gap = pathway.select_t([r["t"] for r in rows], {m: [r[m] for r in rows]
                                                                                 for m in names}, targets)
    except ValueError as exc:  # every point NaN: nothing to export
        return _diverged(store, item.key, item, DivergedError(str(exc)), placement)
    t_star, metrics = t_interpolated, evaluate_at(t_interpolated)
    grid_gaps = [mean_gap(r, targets, names) for r in rows]
    best = int(np.nanargmin(grid_gaps))
    if not mean_gap(metrics, targets, names) <= grid_gaps[best]:  # interpolation misled: take the evaluated best
        t_star, metrics = rows[best]["t"], evaluate_at(rows[best]["t"])  # again: the saved BatchNorm is its own
    gap = mean_gap(metrics, targets, names)
    meta = {**job_meta("endpoint", item, log, seconds, placement, params.batch_size),
            "metrics": metrics, "pathway": {"t_star": t_star, "t_interpolated": t_interpolated,
                                            "predicted_gap": predicted_gap, "gap": gap, "selection_metrics": list(names)}}
    return store.save_artifact(item.key, meta, weights=savable_state(model), points=pa.Table.from_pylist(rows))


def mean_gap(metrics: dict, targets: dict, names) -> float:
    """The mean absolute gap of ``metrics`` to ``targets`` over ``names`` (the pathway's yardstick)."""
    return float(np.mean([abs(metrics[m] - targets[m]) for m in names]))


def pathway_rows(store: Store, item: Endpoint, source_method: str) -> list[dict]:
    """A pathway endpoint beside the original, its source endpoint and the retrained model, with
    each one's mean gap to the retrained model on the task's selection metrics (the report's
    comparison), and the evaluated points of its curve (model "curve", with t)."""
    meta = store.read_meta(item.key)
    targets = store.read_meta(item.reference)["metrics"]
    names = meta["pathway"]["selection_metrics"]
    ident = {"task": item.task, "ratio": item.ratio, "seed": item.seed, "method": item.method,
             "source_method": source_method, "optimizer": item.optimizer, "curriculum": item.curriculum,
             "endpoint": item.key, "t_star": meta["pathway"]["t_star"]}
    curve = store.load_points(item.key).to_pylist()  # the points t* was chosen from; t=0 is the original
    models = (("original", {k: v for k, v in curve[0].items() if k != "t"}),
              ("source", store.read_meta(item.source)["metrics"]), ("pathway", meta["metrics"]), ("retrained", targets))
    rows = [{**ident, "model": model, "t": float("nan"), "gap_to_retrained": mean_gap(metrics, targets, names),
             **metrics} for model, metrics in models]
    return rows + [{**ident, "model": "curve", "gap_to_retrained": mean_gap(point, targets, names), **point}
                   for point in curve]


def bend_key(curve: Curve) -> str:
    """The key of a Bezier curve's trained bend theta_12 (its points live under curve.key)."""
    return curve.key.replace("curve-", "bend-", 1)


def build_bend(store: Store, curve: Curve, placement: Placement | None = None) -> dict | None:
    """Fit the quadratic Bezier bend with the first endpoint's method objective."""
    placement = start_job(store, bend_key(curve), "curve", curve, placement)
    task, options, data = task_data(curve.task, curve.options, curve.ratio)
    model = task.new_model(options, seed=0, placement=placement)
    theta_1, theta_2 = store.load_weights(curve.endpoint_1), store.load_weights(curve.endpoint_2)
    params = METHODS[curve.objective].Params(**curve.hparams)
    fit = CurveFitSpec(**curve.fit)
    original_key = store.read_meta(curve.endpoint_1)["item"]["original"]
    frozen = teachers(task, options, curve.objective, lambda: store.load_weights(original_key), placement)
    started = time.time()
    try:
        bend, log = fit_bezier_bend(model, theta_1, theta_2, task, data, curve.objective, params, fit,
                                    seed=curve.seed, placement=placement, teachers=frozen)
    except DivergedError as exc:
        return _diverged(store, bend_key(curve), curve, exc, placement)
    seconds = time.time() - started
    if not placement.writes:
        return None
    return store.save_artifact(bend_key(curve), job_meta("bend", curve, log, seconds, placement, fit.batch_size),
                               weights=bend)


@lru_cache(maxsize=16)
def _curve_names(task: str, options_json: str) -> tuple[str, ...]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation (phi-1.5: 0.08 s, not 10 s and 6 GB)
        return tuple(curve_parameters(TASKS[task].new_model(json.loads(options_json), seed=0)))


def curve_names(task: str, options: dict) -> tuple[str, ...]:
    """The names of the tensors a curve of this task's model moves (``curves.curve_parameters``)."""
    return _curve_names(task, json.dumps(options, sort_keys=True))


def control_points(store: Store, curve: Curve) -> list[dict]:
    """[theta_1, (bend,) theta_2] over the curve's parameter names (CPU tensors, as stored)."""
    names = curve_names(curve.task, curve.options)
    ends = [store.load_weights(curve.endpoint_1), store.load_weights(curve.endpoint_2)]
    bends = [store.load_weights(bend_key(curve))] if curve.trained else []
    return [{n: cp[n] for n in names} for cp in [ends[0], *bends, ends[1]]]


def interior_ts(curve: Curve) -> list[float]:
    return [float(t) for t in t_grid(curve.points)[1:-1]]


def evaluate_curve_serially(store: Store, curve: Curve, ts: list[float] | None = None,
                            placement: Placement | None = None, cps: list[dict] | None = None) -> list[dict]:
    """Points ``ts`` (default: the interior ones) of a curve in this process, at the curve's
    precision; ``cps``: its control points when the caller has them already."""
    return evaluate_curve_points(curve.task, curve.options, curve.ratio, cps or control_points(store, curve),
                                 interior_ts(curve) if ts is None else ts, (store.uri, curve.reference),
                                 placed(placement, curve))


def save_points(store: Store, curve: Curve, rows: list[dict]) -> dict:
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["t"]))
    return store.save_artifact(curve.key, {"kind": "curve_points", "item": asdict(curve)}, points=table)


def original_metrics(store: Store, original: Original, reference: Retrained,
                     placement: Placement | None = None) -> dict:
    """The original model evaluated on one ratio's splits (a reference line in figures)."""
    return evaluate_state(original.task, original.options, reference.ratio, store.load_weights(original.key),
                          (store.uri, reference.key), placed(placement, original))


def curve_rows(store: Store, curve: Curve, first_endpoint: str) -> list[dict]:
    """Every evaluated point of a curve, oriented so that t=0 is ``first_endpoint``.

    t=0 and t=1 come from the endpoints' own evaluations (same BatchNorm
    re-estimation), the interior from the curve's stored points.
    """
    start = store.read_meta(curve.endpoint_1)["metrics"]
    end = store.read_meta(curve.endpoint_2)["metrics"]
    rows = [{"t": 0.0, **start}, *store.load_points(curve.key).to_pylist(), {"t": 1.0, **end}]
    if first_endpoint != curve.endpoint_1:  # a shared linear curve stored the other way round
        rows = [{**r, "t": 1.0 - r["t"]} for r in reversed(rows)]
    return rows


def use_threads(num_cpus: float) -> None:
    """Match torch's intra-op threads to the CPUs Ray gave this process."""
    torch.set_num_threads(max(1, int(num_cpus)))
