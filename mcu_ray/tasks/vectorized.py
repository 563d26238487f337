"""Several curve points of a classifier in one pass: ``torch.func.vmap`` over stacked parameters.

A small model (digits, ResNet-18, BERT-base) fills a device many times over, and a curve
point costs two passes over data (BatchNorm re-estimation on Dr, then predictions on test,
retain and forget). Evaluating a group of K points as one vectorised model turns K small
passes into one K-times wider pass. BatchNorm is re-estimated per point exactly as
``recompute_batchnorm`` does it (a cumulative average over minibatches): each point's
running statistics are a row of the stacked buffers, updated in place under vmap.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from mcu_ray.batches import iterate_batches
from mcu_ray.curves import coefficients, lora_factor
from mcu_ray.placement import Placement
from mcu_ray.tasks.batchnorm import recompute_batchnorm

STEP_COUNTERS = "num_batches_tracked"  # BatchNorm's batch counter: shared by the group, not stacked


def points_per_pass(model: nn.Module, one_point_peak: int, placement: Placement) -> int:
    """How many points fit in one vectorised pass on a GPU: half its free memory over one
    point's measured peak (activations) plus its row of the stacked weights."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    free, _ = torch.cuda.mem_get_info(placement.device)
    return max(1, int(0.5 * free // max(one_point_peak + weights, 1)))


_POINTS_PER_PASS: dict = {}  # (task, placement) -> points per vmapped pass, measured once per process


def in_groups(evaluate: Callable, model: nn.Module, ts: list, placement: Placement, key) -> list:
    """``evaluate(ts_group)`` over groups of ``ts``: all at once on the CPU; on a GPU, the first
    time for ``key``, the first point alone with its memory peak measured, then (always) groups
    as large as ``points_per_pass`` allows."""
    if placement.device.type != "cuda" or len(ts) < 2:
        return evaluate(ts)
    rows, start = [], 0
    if key not in _POINTS_PER_PASS:
        torch.cuda.reset_peak_memory_stats(placement.device)
        before = torch.cuda.memory_allocated(placement.device)
        rows, start = evaluate(ts[:1]), 1
        _POINTS_PER_PASS[key] = points_per_pass(model, torch.cuda.max_memory_allocated(placement.device) - before,
                                                placement)
    size = _POINTS_PER_PASS[key]
    for first in range(start, len(ts), size):
        rows += evaluate(ts[first:first + size])
    return rows


_VMAP_FASTER: dict = {}  # (task, placement) -> whether this process measured vmapped points faster
WARM_TIMING_POINTS = 6  # a call must hold this many points to measure both ways warm


def faster_of(one_by_one: Callable, vmapped: Callable, ts: list, key) -> list:
    """Rows of ``ts`` by whichever way is faster here: the first time for ``key`` with at least
    ``WARM_TIMING_POINTS`` points, each way runs once untimed (one point one by one, two vmapped),
    then once timed (the same), and the choice is kept for the process; before that, one by one
    (both give the same numbers; on a CPU which is faster depends on the model).

    Why warm: a process's first point pays one-off costs (allocations, first kernels); timed cold,
    digits' first point took 0.14 s one by one against 0.09 s warm, so a cold one-by-one point lost
    to two vmapped ones (0.13 s each) although vmapped points cost 0.11-0.15 s each warm."""
    if key in _VMAP_FASTER:
        return (vmapped if _VMAP_FASTER[key] else one_by_one)(ts)
    if len(ts) < WARM_TIMING_POINTS:
        return one_by_one(ts)
    rows = one_by_one(ts[:1]) + vmapped(ts[1:3])  # warm-up of both ways
    started = time.perf_counter()
    rows += one_by_one(ts[3:4])
    single = time.perf_counter() - started
    started = time.perf_counter()
    rows += vmapped(ts[4:6])
    _VMAP_FASTER[key] = (time.perf_counter() - started) / 2 < single
    return rows + ((vmapped if _VMAP_FASTER[key] else one_by_one)(ts[6:]) if ts[6:] else [])


def stacked_forward(model: nn.Module, logits_fn: Callable):
    """(stacked params, stacked buffers, batch) -> logits (K, batch, classes)."""
    def one(params, buffers, batch):
        return logits_fn(lambda *args, **kwargs: functional_call(model, {**params, **buffers}, args, kwargs), batch)

    return vmap(one, in_dims=(0, 0, None))


@torch.no_grad()
def curve_logits(model: nn.Module, control_points: list[dict], ts: list[float], splits: dict,
                 bn_data: dict, placement: Placement, logits_fn: Callable, kind: str = "bezier",
                 batch_size: int = 256) -> list[dict]:
    """Class logits of phi(t) on each of ``splits`` for every t: one dict split -> (n, classes) per t,
    float32 on the CPU (as ``classification.predict_logits`` gives them for one point).

    ``bn_data`` is what BatchNorm statistics are re-estimated on (Dr), at every t separately.
    """
    if any(lora_factor(name, control_points[0]) for name in control_points[0]):
        raise ValueError("LoRA curves are evaluated one point at a time: their points are adapters of other ranks")
    weights = torch.tensor([coefficients(t, len(control_points) - 1, kind) for t in ts],
                           device=placement.device)  # (K, control points)
    params = {name: torch.tensordot(weights.to(control_points[0][name].dtype),
                                    torch.stack([cp[name] for cp in control_points]), dims=1)
              for name in control_points[0]}  # (K, ...) each: phi(t) for every t, built in place
    for norm in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        norm.reset_running_stats()
    buffers = {name: torch.stack([b] * len(ts)) for name, b in model.named_buffers()
               if not name.endswith(STEP_COUNTERS)}  # (K, ...) per buffer
    forward = stacked_forward(model, logits_fn)
    recompute_batchnorm(model, bn_data, placement, lambda _, batch: forward(params, buffers, batch), batch_size)
    model.eval()
    out = {}
    for name, split in splits.items():
        parts = []
        for minibatch in iterate_batches(split, batch_size):
            with placement.autocast():
                logits = forward(params, buffers, placement.batch(minibatch))  # (K, b, classes)
            parts.append(logits.float().cpu())
        out[name] = torch.cat(parts, dim=1)  # (K, n, classes)
    return [{name: logits[k] for name, logits in out.items()} for k in range(len(ts))]
