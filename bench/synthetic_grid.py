"""A synthetic sweep in a store: rows for every cell of a sweep file's plan, nothing trained.

The plan is the sweep file's own (``make_plan``: its tasks, settings, methods, ratios, seeds
and points), the rows are written through ``mcu_ray.tables.write_table`` in the tables' schemas,
and ``spec.json`` records the plan as ``python -m mcu_ray.sweep`` does, so the report reads the
store as it reads a real one. Values are drawn per endpoint and per curve from seeded generators:
chords between the endpoints with a bump, which gives barriers, cliffs and points that beat both
endpoints. For the report's benchmark and its browser test, not for science.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from mcu_ray import __version__
from mcu_ray.barriers import summarise_metric
from mcu_ray.jobs import t_grid
from mcu_ray.plan import make_plan
from mcu_ray.spec import load_spec, spec_to_dict
from mcu_ray.store import Store
from mcu_ray.sweep import plan_record
from mcu_ray.tables import METRICS, write_table
from mcu_ray.tasks import TASKS

BUMPS = {"linear": 0.15, "bezier": 0.05}  # size of the mid-curve bump, as a fraction of the metric's range


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256("/".join(map(str, keys)).encode()).hexdigest()[:12], 16))


def _model_metrics(key: str, metrics: dict, *base) -> dict:
    """One model's metrics: accuracies and scores in [0, 1], losses in nats, Forget Quality a p-value;
    drawn around a centre shared by the models of the same ``base`` (task and ratio), as real ones are."""
    centre, rng, values = _rng(*base), _rng(key), {}
    for m in metrics:
        family = METRICS[m].family
        if family == "forget_quality":
            values[m] = 10 ** np.clip(centre.uniform(-5, -1) + rng.normal(0, 1), -8, 0)
        elif family == "loss":
            values[m] = max(0.01, centre.uniform(0.2, 2.5) + rng.normal(0, 0.3))
        else:
            values[m] = float(np.clip(centre.uniform(0.4, 0.9) + rng.normal(0, 0.05), 0, 1))
    return values


def _along(curve_key: str, kind: str, t: np.ndarray, start: dict, end: dict, directions: dict) -> dict:
    """Each metric along t: the chord between the endpoints plus a bump 4t(1 - t); one draw per curve
    moves every metric the better or the worse way at once (an intermediate model may beat both
    endpoints, or a barrier rise), another each metric on its own."""
    rng, found = _rng(curve_key), {}
    bump, quality = 4 * t * (1 - t), rng.normal()
    for m in start:
        family, size = METRICS[m].family, BUMPS[kind] * (0.7 * quality * directions[m] + 0.5 * rng.normal())
        if family == "forget_quality":  # on a log scale
            logs = (1 - t) * np.log10(start[m]) + t * np.log10(end[m]) + 3 * size * bump
            found[m] = np.clip(10 ** logs, 1e-12, 1.0)
        else:
            span = 3.0 if family == "loss" else 1.0
            found[m] = np.clip((1 - t) * start[m] + t * end[m] + span * size * bump, 0.0,
                               None if family == "loss" else 1.0)
    return found


def write_synthetic_sweep(spec_path: str, storage: str, seeds=None, failed_every: int = 0,
                          missing_every: int = 0) -> dict:
    """Write the plan of ``spec_path`` (with ``seeds`` instead of the file's, when given) to ``storage``.

    Every ``failed_every``-th cell is written as diverged (NaN metrics, a reason), every
    ``missing_every``-th is left out (0: none). Returns the sweep's name and row counts.
    """
    spec = load_spec(spec_path)
    if seeds is not None:
        spec = dataclasses.replace(spec, seeds=tuple(seeds))
    plan, store = make_plan(spec), Store(storage)
    store.write_bytes(json.dumps({"spec": spec_to_dict(spec), "spec_hash": "synthetic", "plan": plan_record(plan)},
                                 default=str).encode(), spec.name, "spec.json")
    ident = {"sweep": spec.name, "spec_hash": "synthetic", "code_version": __version__}
    t = np.round(t_grid(spec.points), 6)
    counts = {"sweep": spec.name, "cells": len(plan.cells), "results": 0, "barriers": 0, "references": 0}
    for i, cell in enumerate(plan.cells, start=1):
        if missing_every and i % missing_every == 0:
            continue
        task, failed = TASKS[cell.task], bool(failed_every and i % failed_every == 0)
        e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
        row = {**ident, "cell_id": cell.key, "task": cell.task, "setting": cell.setting, "method_1": e1.method,
               "method_2": e2.method, "optimizer_1": e1.optimizer, "optimizer_2": e2.optimizer,
               "curriculum_1": e1.curriculum, "curriculum_2": e2.curriculum, "ratio": cell.ratio, "seed": cell.seed,
               "endpoint_1": e1.key, "endpoint_2": e2.key, "seed_1": e1.seed, "seed_2": e2.seed,
               "precision": e1.precision}
        start, end = (_model_metrics(e.key, task.metric_directions, cell.task, cell.ratio) for e in (e1, e2))
        results, barriers = [], []
        for kind, key in cell.curves:
            at = {"curve": kind, "curve_key": key}
            if failed:
                reason = {"status": "diverged", "reason": f"{e2.key} diverged: synthetic failure"}
                results += [{**row, **at, "t": float(x), **reason} for x in t]
                barriers += [{**row, **at, "metric": m, **reason} for m in task.metric_directions]
                continue
            values = _along(key, kind, t, start, end, task.metric_directions)
            results += [{**row, **at, "t": float(x), **{m: float(v[j]) for m, v in values.items()}, "status": "ok",
                         "reason": ""} for j, x in enumerate(t)]
            for m, direction in task.metric_directions.items():
                s = summarise_metric(m, t, values[m], direction)
                barriers.append({**row, **at, "metric": m, "deviation": s.deviation, "argmax_t": s.argmax_t,
                                 "min": s.minimum, "max": s.maximum, "mean": s.mean, "start": s.start, "end": s.end,
                                 "integral": s.integral, "curve_length": 10.0, "status": "ok", "reason": ""})
        write_table(store, spec.name, "barriers", barriers, cell.key)
        write_table(store, spec.name, "results", results, cell.key)
        counts["results"] += len(results)
        counts["barriers"] += len(barriers)
    originals = {c.retrained: plan.endpoints[c.endpoint_1].original for c in plan.cells}
    for reference in plan.retrained.values():
        metrics = TASKS[reference.task].metric_directions
        rows = [{**ident, "task": reference.task, "ratio": reference.ratio, "precision": reference.precision,
                 "model": model, "key": key, **_model_metrics(key, metrics, reference.task, reference.ratio)}
                for model, key in (("original", originals[reference.key]), ("retrained", reference.key))]
        write_table(store, spec.name, "references", rows, reference.key)
        counts["references"] += len(rows)
    return counts
