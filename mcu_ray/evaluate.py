"""Evaluation of one model point (an endpoint, or phi(t) on a curve) -> one row of metrics.

Metrics may be relative to the retrained model (TOFU's Forget Quality compares with it),
named by ``retrained_at`` = (storage, retrained model key); its statistics are computed once
per process and split.
Everything runs on the ``Placement`` the caller decides (the GPU Ray gave an evaluation
task, a training worker's device, or an explicit one in tests).
"""
from __future__ import annotations

from functools import lru_cache

from mcu_ray.curves import load_state
from mcu_ray.placement import Placement
from mcu_ray.tasks import TASKS


@lru_cache(maxsize=8)
def task_data(task_name: str, options, ratio: float):
    """(task, splits) of one (task, options, ratio), cached per process (``options``: the task's frozen Options)."""
    task = TASKS[task_name]
    return task, task.load(options, ratio)


@lru_cache(maxsize=8)
def _eval_context(task_name: str, options, ratio: float, storage: str, retrained_key: str, placement: Placement):
    from mcu_ray.store import Store

    task, data = task_data(task_name, options, ratio)
    return task.eval_context(options, data, Store(storage).load_weights(retrained_key), placement)


def eval_context(task_name: str, options, ratio: float, retrained_at: tuple[str, str], placement: Placement):
    """The task's evaluation context for retrained_at = (storage, retrained model key), cached per placement."""
    return _eval_context(task_name, options, ratio, *retrained_at, placement)


def evaluate_model(model, task_name: str, options, ratio: float, context, placement: Placement) -> dict:
    task, data = task_data(task_name, options, ratio)
    return task.evaluate(model, options, data, context, placement)


def evaluate_state(task_name: str, options, ratio: float, state: dict, retrained_at: tuple[str, str],
                   placement: Placement) -> dict:
    """Every metric of the model with weights ``state``."""
    model = TASKS[task_name].new_model(options, seed=0, placement=placement)
    load_state(model, state)
    context = eval_context(task_name, options, ratio, retrained_at, placement)
    return evaluate_model(model, task_name, options, ratio, context, placement)


def validate_state(task_name: str, options, ratio: float, state: dict, retrained_at: tuple[str, str],
                   placement: Placement) -> dict:
    """The validation-view metrics (``Task.validate``) of the model with weights ``state``: what a
    hyper-parameter search scores, on data the report never does."""
    task, data = task_data(task_name, options, ratio)
    model = task.new_model(options, seed=0, placement=placement)
    load_state(model, state)
    context = eval_context(task_name, options, ratio, retrained_at, placement)
    return task.validate(model, options, data, context, placement)


@lru_cache(maxsize=1)
def scratch_model(task_name: str, options, placement: Placement):
    """A model to load curve points into, built once per evaluation process (phi-1.5: ~15 s on
    the CPU, then moved): every curve parameter is overwritten at each point, BatchNorm
    statistics re-estimated, and what else it holds (a LoRA base, constant buffers) is the same
    for every curve of the task."""
    return TASKS[task_name].new_model(options, seed=0, placement=placement)


def evaluate_curve_points(task_name: str, options, ratio: float, control_points: list, ts: list[float],
                          retrained_at: tuple[str, str], placement: Placement, kind: str = "bezier") -> list[dict]:
    """Metrics of phi(t) for each t, the curve of ``kind`` through ``control_points`` (parameter dicts).

    The process's scratch model is on the device, the control points moved there once; the task
    evaluates the points one by one or several per pass (``Task.evaluate_curve``).
    """
    task, data = task_data(task_name, options, ratio)
    model = scratch_model(task_name, options, placement)
    control_points = [placement.tensors(cp) for cp in control_points]
    context = eval_context(task_name, options, ratio, retrained_at, placement)
    return task.evaluate_curve(model, options, data, context, placement, control_points, list(ts), kind)
