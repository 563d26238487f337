"""One function per artifact: read inputs from the store, run a plain loop, write the result.

These are what Ray Train jobs and Ray tasks execute (see ``runner``), but they use no
Ray themselves, so tests can call them directly. Each builder is its own science inside
``run_job``, which records the job in the store's job ledger before it starts (which is
how "trained exactly once" is counted), times its loop, stores a divergence as a diverged
artifact and writes the metadata every trained artifact shares.

Every builder takes the ``Placement`` of its process (default: CUDA when present) and
computes at its artifact's precision. In a data-parallel job every worker runs the
builder on its shard of each batch; only rank 0 records, evaluates and writes.

A model's evaluation is stored with its per-example values (``Evaluation.examples``, from the same
passes as its metrics) as the artifact's examples.parquet; a curve's points, when asked for, in an
artifact of their own (``examples_key``), so that asking for them later adds to a curve without
changing its key.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np
import pyarrow as pa
import torch

from mcu_ray import pathway_curve, provenance
from mcu_ray.curves import curve_parameters, load_point, load_state, savable_state
from mcu_ray.evaluate import eval_context, evaluate_curve_points, evaluate_model, evaluate_state, task_data
from mcu_ray.methods import METHODS
from mcu_ray.placement import Placement
from mcu_ray.plan import Curve, Endpoint, Original, Retrained, item_as_dict
from mcu_ray.store import Store
from mcu_ray.tables import example_table
from mcu_ray.tasks import TASKS
from mcu_ray.tasks.base import random_network, retain_checkpoint
from mcu_ray.methods.curriculum import CurriculumParams, needs_original_losses
from mcu_ray.train import DivergedError, Teachers, bend_budget, fit_bends, frozen_copy, train_supervised, unlearn


def t_grid(points: int) -> np.ndarray:
    """The evaluated t values: ``points`` equally spaced in [0, 1]."""
    return np.linspace(0.0, 1.0, points)


def placed(placement: Placement | None, item) -> Placement:
    """The process's placement (default: CUDA when present) at the artifact's precision."""
    return (placement or Placement()).with_precision(item.precision)


@dataclass
class Job:
    """One artifact's build under way (``run_job``): its store, key, plan item and placement."""

    store: Store
    key: str
    item: object
    placement: Placement
    seconds: float = 0.0  # train_seconds: set by ``timed``

    @contextlib.contextmanager
    def timed(self):
        """Time the training loop: model building, teachers and evaluation are left out."""
        started = time.time()
        yield
        self.seconds = time.time() - started


@dataclass
class Built:
    """What a builder made on rank 0: the training log, the effective batch, what meta.json holds
    besides ``job_meta`` (metrics, a pathway's choice of t*) and the artifact's files."""

    log: dict
    batch_size: int
    meta: dict = field(default_factory=dict)
    weights: dict | None = None
    points: pa.Table | None = None
    examples: pa.Table | None = None


def run_job(store: Store, item, placement: Placement | None, build: Callable[[Job], Built | None], *,
            key: str = "", kind: str = "", replicated: bool = False) -> dict | None:
    """What every builder shares around its own ``build(job)``: the job at the item's precision
    (``replicated``: its model whole on every worker, ``Placement.replicated``), recorded in the
    ledger under the item's kind by rank 0, timed (``Job.timed``), a ``DivergedError`` stored as a
    diverged artifact (no weights, its reason) so that the grid goes on, and what ``build`` made
    saved with ``job_meta``. ``build`` returns None on the ranks that do not write.

    ``key``: the artifact's (default the item's); ``kind``: meta.json's (default the item's kind).
    Returns the saved meta.json, or None where nothing was saved.
    """
    placement, key, item_kind = placed(placement, item), key or item.key, type(item).__name__.lower()
    if placement.writes:
        store.record_job(key, item_kind)
    job = Job(store, key, item, placement.replicated() if replicated else placement)
    try:
        built = build(job)
    except DivergedError as exc:  # rank 0 records it: no weights, a status and the reason
        if not placement.writes:
            return None
        return store.save_artifact(key, {"kind": item_kind, "item": item_as_dict(item), "status": "diverged",
                                         "reason": str(exc), "provenance": provenance.describe(placement.device)})
    if built is None:
        return None
    meta = {**job_meta(kind or item_kind, item, built.log, job.seconds, job.placement, built.batch_size), **built.meta}
    return store.save_artifact(key, meta, weights=built.weights, points=built.points, examples=built.examples)


def job_meta(kind: str, item, log: dict, seconds: float, placement: Placement, batch_size: int) -> dict:
    """What every trained artifact records about how it was computed, and by what (``provenance``:
    this process's code, libraries and device)."""
    return {"kind": kind, "item": item_as_dict(item), "train_log": log, "train_seconds": seconds,
            "device": placement.device.type, "precision": placement.precision, "workers": placement.world_size,
            "strategy": placement.strategy, "grad_accum": placement.grad_accum, "effective_batch": batch_size,
            "provenance": provenance.describe(placement.device)}


def _supervised(job: Job, split: str, ratio: float) -> Built | None:
    """Train a model of the item's options on ``split``, or load the published retain-only model its
    options name; a retrained model is evaluated too."""
    item, placement = job.item, job.placement
    opts = item.options
    task, data = task_data(item.task, opts, ratio)
    template = getattr(opts, "reference_model", "") if isinstance(item, Retrained) else ""
    published = retain_checkpoint(template, ratio) if template else ""
    if published:  # a published retain-only model: used as it is
        model = task.new_model(dataclasses.replace(opts, model=published), seed=opts.model_seed, placement=placement)
        log = {"steps": 0, "loaded": published}
    else:
        model = placement.shard_model(task.new_model(opts, seed=opts.model_seed,
                                                     placement=placement.on(placement.build_device)))
        with job.timed():
            log = train_supervised(model, task, data.split(split), epochs=opts.epochs, lr=opts.lr,
                                   batch_size=opts.batch_size, weight_decay=opts.weight_decay, seed=opts.model_seed,
                                   placement=placement)
            model = placement.gather(model, lambda: task.new_model(opts, seed=opts.model_seed, placement=placement))
    if not placement.writes:
        return None
    # a loaded retain-only checkpoint keeps its whole state: with LoRA its frozen base is not the original's, which
    # is what every model of these options is rebuilt over before the stored weights are loaded
    built = Built(log, opts.batch_size, weights=model.state_dict() if published else savable_state(model))
    if isinstance(item, Retrained):  # compared with itself: TOFU's Forget Quality is 1 by definition
        context = task.eval_context(opts, data, built.weights, placement)
        evaluation = task.evaluate(model, opts, data, context, placement)
        built.meta["metrics"], built.examples = dict(evaluation), example_table(evaluation.examples)
    return built


def build_original(store: Store, item: Original, placement: Placement | None = None) -> dict | None:
    """The model everything unlearns from: trained on all of D (ratio is irrelevant here)."""
    return run_job(store, item, placement, lambda job: _supervised(job, "train", ratio=1.0))  # D: ratio-free


def build_retrained(store: Store, item: Retrained, placement: Placement | None = None) -> dict | None:
    """The gold standard for one forget ratio: trained from scratch on Dr."""
    return run_job(store, item, placement, lambda job: _supervised(job, "retain", ratio=item.ratio))


def teachers(task, options, method: str, original_state, placement: Placement,
             curriculum_params: CurriculumParams | None = None) -> Teachers:
    """The frozen models ``method`` (and an ordering curriculum) consult, on the device; only those it needs.

    ``original_state()`` gives the original's weights: read only when a teacher needs them.
    """
    spec = METHODS[method]
    original = random = None
    if spec.uses_original or needs_original_losses("cl" if curriculum_params else "none", curriculum_params):
        original = task.new_model(options, seed=0, placement=placement)
        load_state(original, original_state())
        original = frozen_copy(original)
    if spec.uses_random_teacher:  # the network ZRF compares with too: same seed, initial BatchNorm statistics
        random = random_network(task, options, placement)
    return Teachers(original, random)


def build_endpoint(store: Store, item: Endpoint, placement: Placement | None = None) -> dict | None:
    """Unlearn the original with one method/optimiser/curriculum/seed (or, with a source, along a
    pathway: ``build_pathway``); evaluate the result."""
    return run_job(store, item, placement, build_pathway if item.source else _unlearned, replicated=bool(item.source))


def _unlearned(job: Job) -> Built | None:
    """An endpoint's own training: the method's loop from the original, then its evaluation."""
    item, placement = job.item, job.placement
    options = item.options
    task, data = task_data(item.task, options, item.ratio)
    model = task.new_model(options, seed=0, placement=placement.on(placement.build_device))
    original = job.store.load_weights(item.original)  # read once: the starting point and, if needed, a teacher
    model = placement.shard_model(load_state(model, original))
    params = item.hparams
    frozen = teachers(task, options, item.method, lambda: original, placement, item.curriculum_params)
    with job.timed():
        log = unlearn(model, task, data, item.method, params, optimizer=item.optimizer,
                      optimizer_params=item.optimizer_params, curriculum=item.curriculum,
                      curriculum_params=item.curriculum_params, seed=item.seed, placement=placement, teachers=frozen)
        model = placement.gather(model, lambda: task.new_model(options, seed=0, placement=placement))
    if not placement.writes:
        return None
    context = eval_context(item.task, options, item.ratio, (job.store.uri, item.retrained), placement)
    evaluation = evaluate_model(model, item.task, options, item.ratio, context, placement)
    return Built(log, params.batch_size, {"metrics": dict(evaluation)}, weights=savable_state(model),
                 examples=example_table(evaluation.examples))


def build_pathway(job: Job) -> Built | None:
    """Pathway unlearning: the point t* of a trained curve original -> source endpoint.

    t* is chosen as the reference chooses it, without the retrained model: the curve is evaluated
    at ``select_points`` values of t (BatchNorm re-estimated on Dr), and its accuracy on Df and on
    Dr there is aligned with the original's accuracy on the validation split and on Dr (the bend's
    beta targets, ``pathway_curve.baselines``) by ``pathway_curve.select_t`` (the reference's
    ``find_optimal_t``: cubic, over [search_from, 1], the smallest t on ties). phi(t*) is then
    evaluated itself and stored as an ordinary endpoint, its curve's points beside it. Should
    phi(t*) be further from the targets than an evaluated point in [search_from, 1] (the spline
    overshot), that point is exported instead: a check the reference, which exports the
    interpolated t as it is, does not make. The retrained model only scores the result, in
    ``pathway_rows``: out of sample, since neither it nor the test split was read to choose t*.
    A failed source endpoint, or no usable point on the curve, makes it diverged.
    """
    store, item, placement = job.store, job.item, job.placement
    problem = store.first_failed(item.source)
    if problem:
        raise DivergedError(f"source endpoint {problem}")
    options = item.options
    task, data = task_data(item.task, options, item.ratio)
    model = task.new_model(options, seed=0, placement=placement)
    original, source = store.load_weights(item.original), store.load_weights(item.source)
    load_state(model, original)
    params = item.hparams
    with job.timed():  # the curve's fit; its evaluation and the choice of t* follow
        bend, log = pathway_curve.fit_pathway_bend(model, source, task, data, params, seed=item.seed,
                                                   placement=placement)
    if not placement.writes:
        return None
    curve = curve_parameters(model)
    cps = [placement.tensors({n: cp[n] for n in curve}) for cp in (original, bend, source)]
    context = eval_context(item.task, options, item.ratio, (store.uri, item.retrained), placement)
    targets = {"forget": log["forget_baseline"], "retain": log["retain_baseline"]}

    def evaluate_at(t: float) -> tuple[dict, dict]:
        """phi(t) loaded into ``model`` (BatchNorm re-estimated on Dr, as it is then saved): its
        metrics, and its accuracies on Df and Dr that t* is chosen on."""
        load_point(model, cps, t)
        metrics = evaluate_model(model, item.task, options, item.ratio, context, placement)
        return metrics, pathway_curve.selection_accuracies(model, task, data, placement)

    rows, accuracies = [], []
    for t in t_grid(params.select_points):
        metrics, acc = evaluate_at(float(t))
        rows.append({"t": float(t), **metrics})
        accuracies.append(acc)
    ts = [r["t"] for r in rows]
    try:
        t_interpolated, predicted_gap = pathway_curve.select_t(
            ts, {name: [a[name] for a in accuracies] for name in pathway_curve.SELECTION_SPLITS}, targets,
            params.search_from)
    except ValueError as exc:  # no usable point: nothing to export
        raise DivergedError(str(exc)) from exc
    t_star = t_interpolated
    metrics, acc = evaluate_at(t_star)
    grid_gaps = [pathway_curve.selection_gap(a, targets) if t >= params.search_from - 1e-12 else float("nan")
                 for t, a in zip(ts, accuracies)]
    best = int(np.nanargmin(grid_gaps))  # the first minimum, as select_t's
    if not pathway_curve.selection_gap(acc, targets) <= grid_gaps[best]:  # the spline misled: the evaluated best
        t_star = ts[best]
        metrics, acc = evaluate_at(t_star)  # again: the saved BatchNorm is its own
    chosen = {"t_star": t_star, "t_interpolated": t_interpolated, "predicted_gap": predicted_gap,
              "selection_gap": pathway_curve.selection_gap(acc, targets), "targets": targets,
              "search_from": params.search_from,
              "selection": {"t": ts, **{name: [a[name] for a in accuracies] for name in pathway_curve.SELECTION_SPLITS}},
              "gap_metrics": list(task.gap_metrics)}
    return Built(log, params.batch_size, {"metrics": dict(metrics), "pathway": chosen}, weights=savable_state(model),
                 points=pa.Table.from_pylist(rows), examples=example_table(metrics.examples))


def bend_key(curve: Curve) -> str:
    """The key of a curve's trained bends (its points live under curve.key)."""
    return curve.key.replace("curve-", "bend-", 1)


def pack_bends(bends: list[dict]) -> dict:
    """One artifact's weights for a curve's bends: bend j's tensor ``name`` stored as ``j/name``."""
    return {f"{j}/{name}": tensor for j, bend in enumerate(bends) for name, tensor in bend.items()}


def unpack_bends(weights: dict, count: int) -> list[dict]:
    """The bends ``pack_bends`` stored, in order."""
    return [{name.split("/", 1)[1]: t for name, t in weights.items() if name.split("/", 1)[0] == str(j)}
            for j in range(count)]


def build_bend(store: Store, curve: Curve, placement: Placement | None = None) -> dict | None:
    """Fit a curve's bends with the first endpoint's recipe (method, optimiser, curriculum, budget)."""
    return run_job(store, curve, placement, _bends, key=bend_key(curve), kind="bend", replicated=True)


def _bends(job: Job) -> Built | None:
    """A curve's bends fitted between its stored endpoints, with the teachers its objective consults."""
    store, curve, placement = job.store, job.item, job.placement
    options = curve.options
    task, data = task_data(curve.task, options, curve.ratio)
    model = task.new_model(options, seed=0, placement=placement)
    theta_1, theta_2 = store.load_weights(curve.endpoint_1), store.load_weights(curve.endpoint_2)
    params = curve.hparams
    fit = curve.fit
    original_key = store.read_meta(curve.endpoint_1)["item"]["original"]
    frozen = teachers(task, options, curve.objective, lambda: store.load_weights(original_key), placement,
                      curve.curriculum_params)
    with job.timed():
        bends, log = fit_bends(model, theta_1, theta_2, task, data, curve.objective, params, fit, kind=curve.kind,
                               bends=curve.bends, optimizer=curve.optimizer, optimizer_params=curve.optimizer_params,
                               curriculum=curve.curriculum, curriculum_params=curve.curriculum_params,
                               seed=curve.seed, placement=placement, teachers=frozen)
    if not placement.writes:
        return None
    return Built(log, bend_budget(params, fit).batch_size, weights=pack_bends(bends))


@lru_cache(maxsize=16)
def curve_names(task: str, options) -> tuple[str, ...]:
    """The names of the tensors a curve of this task's model moves (``curves.curve_parameters``)."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation (phi-1.5: 0.08 s, not 10 s and 6 GB)
        return tuple(curve_parameters(TASKS[task].new_model(options, seed=0)))


def control_points(store: Store, curve: Curve) -> list[dict]:
    """[theta_1, bends..., theta_2] over the curve's parameter names (CPU tensors, as stored)."""
    names = curve_names(curve.task, curve.options)
    ends = [store.load_weights(curve.endpoint_1), store.load_weights(curve.endpoint_2)]
    bends = unpack_bends(store.load_weights(bend_key(curve)), curve.bends) if curve.trained else []
    return [{n: cp[n] for n in names} for cp in [ends[0], *bends, ends[1]]]


def blend(curve: Curve) -> str:
    """How the curve's control points blend (``curves.KINDS``): a line is a Bezier curve of degree 1."""
    return "polychain" if curve.kind == "polychain" else "bezier"


def interior_ts(curve: Curve) -> list[float]:
    return [float(t) for t in t_grid(curve.points)[1:-1]]


def evaluate_curve_serially(store: Store, curve: Curve, ts: list[float] | None = None,
                            placement: Placement | None = None, cps: list[dict] | None = None) -> list[dict]:
    """Points ``ts`` (default: the interior ones) of a curve in this process, at the curve's
    precision; ``cps``: its control points when the caller has them already."""
    return evaluate_curve_points(curve.task, curve.options, curve.ratio, cps or control_points(store, curve),
                                 interior_ts(curve) if ts is None else ts, (store.uri, curve.retrained),
                                 placed(placement, curve), blend(curve))


def save_points(store: Store, curve: Curve, rows: list[dict], length: float, computed_by: dict | None = None,
                seconds: float | None = None) -> dict:
    """A curve's evaluated points, and its length in parameter space (``curves.curve_length``).

    ``computed_by``: the provenance of the processes that evaluated them (``provenance.combine``);
    default this one's. ``seconds``: the evaluation's wall time, when known.
    """
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["t"]))
    meta = {"kind": "curve_points", "item": item_as_dict(curve), "length": length, "eval_seconds": seconds,
            "provenance": computed_by or provenance.describe()}
    return store.save_artifact(curve.key, meta, points=table)


def examples_key(curve: Curve) -> str:
    """The key of the per-example values of a curve's interior points (its points live under curve.key)."""
    return curve.key.replace("curve-", "examples-", 1)


def point_examples(rows: list) -> pa.Table:
    """The per-example values of evaluated curve points (``Evaluation`` rows), each under its t."""
    return pa.concat_tables([example_table(row.examples, row["t"]) for row in rows])


def save_point_examples(store: Store, curve: Curve, parts: list[pa.Table], computed_by: dict | None = None,
                        seconds: float | None = None) -> dict:
    """The per-example values of a curve's interior points (``point_examples`` of each evaluation task)."""
    meta = {"kind": "curve_examples", "item": item_as_dict(curve), "eval_seconds": seconds,
            "provenance": computed_by or provenance.describe()}
    return store.save_artifact(examples_key(curve), meta, examples=pa.concat_tables(parts))


def original_metrics(store: Store, original: Original, retrained: Retrained,
                     placement: Placement | None = None) -> dict:
    """The original model evaluated on one ratio's splits (a reference line in figures), with its
    per-example values (``Evaluation``)."""
    return evaluate_state(original.task, original.options, retrained.ratio, store.load_weights(original.key),
                          (store.uri, retrained.key), placed(placement, original))


def use_threads(num_cpus: float) -> None:
    """Match torch's intra-op threads to the CPUs Ray gave this process."""
    torch.set_num_threads(max(1, int(num_cpus)))
