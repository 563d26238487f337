"""Evaluation of one model point (an endpoint, or phi(t) on a curve) -> one row of metrics."""
from __future__ import annotations

import json
from functools import lru_cache

import torch

from mcu_ray.curves import state_at
from mcu_ray.tasks import TASKS


@lru_cache(maxsize=8)
def _task_data(task_name: str, options_json: str, ratio: float):
    """Splits and the ZRF reference of one (task, options, ratio); cached per process."""
    task, options = TASKS[task_name], json.loads(options_json)
    data = task.load(options, ratio)
    return task, options, data, task.random_forget_proba(options, data)


def task_data(task_name: str, options: dict, ratio: float):
    """(task, options, data, random-network predictions on Df), cached per process."""
    return _task_data(task_name, json.dumps(options, sort_keys=True), ratio)


def evaluate_state(task_name: str, options: dict, ratio: float, state: dict) -> dict:
    """Every metric of the model with weights ``state`` (BatchNorm re-estimated on Dr)."""
    task, options, data, random_proba = task_data(task_name, options, ratio)
    model = task.new_model(options, seed=0)
    model.load_state_dict(state)
    return task.evaluate(model, options, data, random_proba)


def evaluate_curve_point(task_name: str, options: dict, ratio: float, control_points: list, t: float) -> dict:
    """Metrics of phi(t) for the curve through ``control_points`` (parameter dicts)."""
    task = TASKS[task_name]
    model = task.new_model(options, seed=0)
    with torch.no_grad():
        state = state_at(model, control_points, t)
    return {"t": t, **evaluate_state(task_name, options, ratio, state)}
