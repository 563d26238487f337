"""BT, Bad Teaching (Chundawat et al. 2023): a competent and an incompetent teacher.

The student (the model being unlearned) matches the original model on retain data
and a randomly initialised model on forget data, by KL(teacher || student) between
softmax distributions at temperature T (on probabilities, not raw logits).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mcu_ray.methods.common import Method, UnlearnParams


@dataclass(frozen=True)
class Params(UnlearnParams):
    temperature: float = 1.0  # KL temperature T (Bad Teaching's default)


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-example KL(softmax(teacher/T) || softmax(student/T)), shape (batch,)."""
    teacher = F.softmax(teacher_logits / temperature, dim=-1)  # (b, classes)
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    return (teacher * (torch.log(teacher.clamp_min(1e-12)) - log_student)).sum(-1)


def loss(ctx, forget, retain, params: Params):
    with torch.no_grad():
        bad = ctx.logits(ctx.random_forward, forget)
        good = ctx.logits(ctx.original_forward, retain)
    forget_kl = kl_to_teacher(ctx.logits(ctx.forward, forget), bad, params.temperature)  # (b_f,)
    retain_kl = kl_to_teacher(ctx.logits(ctx.forward, retain), good, params.temperature)  # (b_r,)
    n_f, n_r = len(forget_kl), len(retain_kl)
    total = (n_f * ctx.reduce_forget(forget_kl) + retain_kl.sum()) / (n_f + n_r)
    return total, {"forget_kl": forget_kl.mean().detach(), "retain_kl": retain_kl.mean().detach()}


METHOD = Method(name="bt", Params=Params, loss=loss, uses_retain=True, uses_original=True, uses_random_teacher=True)
