"""Evaluation of one model point (an endpoint, or phi(t) on a curve) -> one row of metrics.

Metrics may be relative to a reference model (TOFU's Forget Quality compares with the
retrained model); the reference's statistics are computed once per process and split.
"""
from __future__ import annotations

import json
from functools import lru_cache

import torch

from mcu_ray.curves import load_state, state_at
from mcu_ray.tasks import TASKS


@lru_cache(maxsize=8)
def _task_data(task_name: str, options_json: str, ratio: float):
    task, options = TASKS[task_name], json.loads(options_json)
    return task, options, task.load(options, ratio)


def task_data(task_name: str, options: dict, ratio: float):
    """(task, options, splits) of one (task, options, ratio), cached per process."""
    return _task_data(task_name, json.dumps(options, sort_keys=True), ratio)


@lru_cache(maxsize=8)
def _eval_context(task_name: str, options_json: str, ratio: float, storage: str, reference_key: str):
    from mcu_ray.store import Store

    task, options, data = _task_data(task_name, options_json, ratio)
    return task.eval_context(options, data, Store(storage).load_weights(reference_key))


def eval_context(task_name: str, options: dict, ratio: float, reference: tuple[str, str]):
    """The task's evaluation context for reference = (storage, retrained model key), cached."""
    return _eval_context(task_name, json.dumps(options, sort_keys=True), ratio, *reference)


def evaluate_model(model, task_name: str, options: dict, ratio: float, context) -> dict:
    task, options, data = task_data(task_name, options, ratio)
    return task.evaluate(model, options, data, context)


def evaluate_state(task_name: str, options: dict, ratio: float, state: dict, reference: tuple[str, str]) -> dict:
    """Every metric of the model with weights ``state``."""
    task = TASKS[task_name]
    model = task.new_model(options, seed=0)
    load_state(model, state)
    return evaluate_model(model, task_name, options, ratio, eval_context(task_name, options, ratio, reference))


def evaluate_curve_point(task_name: str, options: dict, ratio: float, control_points: list, t: float,
                         reference: tuple[str, str]) -> dict:
    """Metrics of phi(t) for the curve through ``control_points`` (parameter dicts)."""
    model = TASKS[task_name].new_model(options, seed=0)  # built once: phi(t) is loaded into it
    with torch.no_grad():
        load_state(model, state_at(model, control_points, t))
    context = eval_context(task_name, options, ratio, reference)
    return {"t": t, **evaluate_model(model, task_name, options, ratio, context)}
