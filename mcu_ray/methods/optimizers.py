"""First-order (FO: AdamW) and second-order (SO: Sophia, as MU-Bench and SOUL run it) optimisers.

SO is, by default, the SophiaG that the MCU authors' code runs: CLU-UML/MU-Bench
``mubench/trainer/soul.py`` (a copy of OPTML-Group/SOUL ``src/optim/sophia.py`` and
``src/optim/__init__.py``), built in ``mubench/trainer/base.py:66-68`` with betas (0.9, 0.95),
rho 0.04 and the run's learning rate and weight decay. Its quirks are kept:

- h is the moving average of g*g of the step's own minibatch gradient, refreshed inside every
  ``step()`` (soul.py:98 -> :73): no Hessian estimator and no refresh period (k = 1);
- m is updated twice per step, in ``update_exp_avg()`` (:99 -> :86) and again in the update
  (:224): m <- beta1^2 m + (1 - beta1^2) g;
- theta <- theta (1 - lr wd) - lr sign(m) min(|m| / (rho bs h + 1e-15), 1) (:221-238), with
  bs = 5120, ``step(closure=None, bs=5120)``'s default (:89), because Hugging Face's Trainer calls
  ``step()`` without it: rho bs = 204.8, so most coordinates take the clipped step lr sign(m);
- no weight decay for parameters whose name contains "bias" or that sit in a LayerNorm-type
  module (:241-272, ``ALL_LAYERNORM_LAYERS``); only parameters that require a gradient.

``hessian: gnb`` is Liu et al.'s Sophia instead (Liuhong99/Sophia ``sophia.py``,
``train_sophiag.py:289, 406-421``): ``step()`` updates m once and leaves h alone; every
``update_period`` (10) steps, after the step, h is refreshed from the gradient of the mean loss
on labels sampled from the model's own output (``gnb_refresh``), and bs is the number of those
labels. FO is AdamW with the same decay groups: MU-Bench's Hugging Face Trainer (4.39,
``Trainer.get_decay_parameter_names``) leaves biases and LayerNorm weights undecayed too.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from mcu_ray.batches import batch_length
from mcu_ray.errors import SpecError
from mcu_ray.placement import untouched

OPTIMIZERS = ("fo", "so")
HESSIANS = ("gradient", "gnb")  # SOUL/MU-Bench's squared minibatch gradient | Sophia's Gauss-Newton-Bartlett
SOURCE_BS = 5120  # soul.py:89 ``step(closure=None, bs=5120)``, never passed by the Trainer
GNB_PERIOD = 10  # Sophia's hess_interval (train_sophiag.py, config/train_gpt2_small_sophiag.py)


@dataclass(frozen=True)
class SophiaParams:
    """Sophia's knobs (the sweep file's ``so:`` block); defaults: MU-Bench's SophiaG."""

    lr: float = 0.0  # 0 = the method's learning rate (MU-Bench: args.learning_rate)
    beta1: float = 0.9  # momentum (base.py:68 passes [0.9, 0.95]; SophiaG's own default 0.965)
    beta2: float = 0.95  # curvature moving average (SophiaG's own default 0.99)
    rho: float = 0.04  # clipping scale of m / (bs h) (base.py:68)
    weight_decay: float | None = None  # decoupled; None = the method's (MU-Bench: args.weight_decay)
    eps: float = 1e-15  # the sources' constant in the denominator (soul.py:237)
    hessian: str = "gradient"  # "gradient": h from g*g of the step's gradient (SOUL, MU-Bench);
    # "gnb": h from g*g of the loss on labels sampled from the model (Sophia's Gauss-Newton-Bartlett)
    update_period: int = 0  # steps between h refreshes; 0 = the source's: 1 for "gradient"
    # (h refreshed inside every step(), soul.py:98), 10 for "gnb" (Sophia's hess_interval)
    bs: int = 0  # the bs of rho*bs*h; 0 = the source's: 5120 for "gradient" (the sources' fixed
    # step(bs=5120)), the number of sampled labels of the last refresh for "gnb" (Sophia passes the
    # batch's tokens, step(bs=total_bs * block_size))

    def check(self, path: str) -> None:
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected a number in [0, 1)")
        if self.lr < 0:
            raise SpecError(f"{path}.lr", self.lr, "expected 0 (the method's) or a positive learning rate")
        for key in ("rho", "eps"):
            if getattr(self, key) <= 0:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected a number > 0")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise SpecError(f"{path}.weight_decay", self.weight_decay, "expected a number >= 0 (or null: the method's)")
        if self.hessian not in HESSIANS:
            raise SpecError(f"{path}.hessian", self.hessian, f"allowed: {', '.join(HESSIANS)}")
        for key in ("update_period", "bs"):
            if getattr(self, key) < 0:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected 0 (the source's) or an integer >= 1")

    def period(self) -> int:
        """Steps between curvature refreshes, the source's when ``update_period`` is 0."""
        return self.update_period or (1 if self.hessian == "gradient" else GNB_PERIOD)


class Sophia(torch.optim.Optimizer):
    """SophiaG: theta <- theta (1 - lr wd) - lr sign(m) min(|m| / (rho bs h + eps), 1).

    ``hessian`` "gradient" is SOUL's step (h refreshed from the step's own gradient every
    ``update_period`` steps, m updated twice); "gnb" is Liu et al.'s (m once, h only through
    ``update_hessian``). ``bs`` 0: the ``targets`` of the last ``update_hessian``.
    """

    def __init__(self, params, lr: float, betas: tuple = (0.9, 0.95), rho: float = 0.04, weight_decay: float = 0.0,
                 eps: float = 1e-15, hessian: str = "gradient", update_period: int = 1, bs: int = SOURCE_BS):
        defaults = dict(lr=lr, betas=tuple(betas), rho=rho, weight_decay=weight_decay, eps=eps, bs=bs, targets=0)
        super().__init__(params, defaults)
        self.hessian, self.update_period = hessian, update_period

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def update_hessian(self, targets: int | None = None) -> None:
        """h <- beta2 h + (1 - beta2) g*g from the current gradients (the sources' ``update_hessian``);
        ``targets``: how many labels the gradient's mean loss averaged (bs when the ``bs`` knob is 0)."""
        for group in self.param_groups:
            beta2 = group["betas"][1]
            if targets is not None:
                group["targets"] = targets
            for p in group["params"]:
                if p.grad is not None:
                    self._state(p)["hessian"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        soul = self.hessian == "gradient"
        for group in self.param_groups:
            (beta1, beta2), lr, rho = group["betas"], group["lr"], group["rho"]
            bs = group["bs"] or group["targets"] or 1  # before GNB's first refresh h = 0: any bs clips
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self._state(p)
                m, h = state["exp_avg"], state["hessian"]
                if soul:
                    if state["step"] % self.update_period == 0:  # soul.py:98 update_hessian(), every step at k = 1
                        h.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    m.mul_(beta1).add_(grad, alpha=1 - beta1)  # soul.py:99 update_exp_avg(): the first m update
                state["step"] += 1
                p.mul_(1 - lr * group["weight_decay"])
                m.mul_(beta1).add_(grad, alpha=1 - beta1)  # soul.py:224 (Sophia's only m update)
                ratio = (m.abs() / (rho * bs * h + group["eps"])).clamp(None, 1)
                p.addcmul_(m.sign(), ratio, value=-lr)
        return loss


def is_layernorm(module: nn.Module) -> bool:
    """A LayerNorm-type module: ``nn.LayerNorm``, or a class named ...LayerNorm / ...RMSNorm, which the
    transformers of MU-Bench's and SOUL's time add to ``ALL_LAYERNORM_LAYERS`` (LlamaRMSNorm, T5LayerNorm...)."""
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


def decay_groups(model: nn.Module, weight_decay: float, tensors: dict | None = None) -> list[dict]:
    """The trainable parameters in two groups, as SOUL, MU-Bench and Hugging Face's Trainer form them:
    ``weight_decay`` for all but biases and LayerNorm-type weights, 0 for those (soul.py:241-272).

    ``tensors``: name -> tensor grouped in place of ``model``'s own parameters of those names (a curve's bend).
    """
    no_decay = {f"{prefix}.{name}" if prefix else name
                for prefix, module in model.named_modules() if is_layernorm(module)
                for name, _ in module.named_parameters()}
    groups = {True: [], False: []}  # decayed?
    for name, p in (tensors.items() if tensors is not None else model.named_parameters()):
        if p.requires_grad:
            groups[name not in no_decay and "bias" not in name].append(p)
    return [{"params": params, "weight_decay": wd}
            for params, wd in ((groups[True], weight_decay), (groups[False], 0.0)) if params]


def adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over tensors or param groups; on a GPU its fused kernel (one launch for every tensor: the same
    update, faster)."""
    params = list(params)
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fused = bool(tensors) and all(p.is_cuda for p in tensors)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def make_optimizer(kind: str, params, lr: float, weight_decay: float, sophia: SophiaParams | None = None,
                   model: nn.Module | None = None):
    """AdamW for FO; Sophia for SO with ``sophia`` (SophiaParams, default when None: lr 0 = ``lr``, weight_decay None =
    ``weight_decay``). ``params``: a module (its trainable parameters in ``decay_groups``), a name -> tensor
    dict (grouped by those names in ``model``), a list of such dicts (a curve's bends: each group records
    its dict's index as ``part``), or tensors (one group, every one decayed)."""
    def groups(wd: float):
        if isinstance(params, nn.Module):
            return decay_groups(params, wd)
        if isinstance(params, dict):
            return decay_groups(model or nn.Module(), wd, params)
        if isinstance(params, list) and params and isinstance(params[0], dict):
            return [{**group, "part": j} for j, part in enumerate(params)
                    for group in decay_groups(model or nn.Module(), wd, part)]
        return [{"params": list(params), "weight_decay": wd}]

    if kind == "fo":
        return adamw(groups(weight_decay), lr, weight_decay)
    if kind == "so":
        knobs = sophia or SophiaParams()
        wd = weight_decay if knobs.weight_decay is None else knobs.weight_decay
        bs = knobs.bs or (SOURCE_BS if knobs.hessian == "gradient" else 0)
        return Sophia(groups(wd), lr=knobs.lr or lr, betas=(knobs.beta1, knobs.beta2), rho=knobs.rho,
                      weight_decay=wd, eps=knobs.eps, hessian=knobs.hessian, update_period=knobs.period(), bs=bs)
    raise ValueError(f"optimizer {kind!r} is not one of {OPTIMIZERS}")


def target_count(batch: dict) -> int:
    """Labels a task's loss averages over in a batch: the answer tokens of a causal-LM batch (``labels``,
    -100 = none, read shifted by one as ``tofu._answer_nll`` does), else one per example (``y``)."""
    if "labels" in batch:
        return int((batch["labels"][:, 1:] != -100).sum())
    return batch_length(batch)


def gnb_refresh(opt: torch.optim.Optimizer, task, model: nn.Module, placement, generator: torch.Generator,
                chain: Callable | None = None):
    """``run_steps``' ``after_step`` for Sophia with ``hessian: gnb``, else None.

    Every ``update_period`` steps (after steps k, 2k, ...: train_sophiag.py:289), on the step's
    global forget and retain batches: labels y ~ the model's own output (``task.sampled_targets``,
    drawn from ``generator``), the summed loss on them over this worker's micro-batches divided by
    the global label count n (the mean of train_sophiag.py:414), gradients summed over the job's
    workers (then ``chain()``, if given: a curve's bends rescaled to the gradient the step sees),
    h <- beta2 h + (1 - beta2) g*g with bs = n, and the gradients cleared so that none reaches
    the next step. Unlike Sophia: the step's batch (Sophia's loop takes the next one) and
    no gradient clipping (the step's gradient is not clipped here either).
    """
    if not isinstance(opt, Sophia) or opt.hessian != "gnb":
        return None
    params = [p for group in opt.param_groups for p in group["params"]]

    def after_step(step: int, forget: dict, retain: dict | None) -> None:
        if step % opt.update_period:
            return
        batches = [batch for batch in (forget, retain) if batch is not None]
        n = sum(target_count(batch) for batch in batches)
        opt.zero_grad(set_to_none=True)
        for batch in batches:
            for part in placement.micro_batches(batch):
                counts = 1.0
                if batch_length(part) == 0:  # a global batch smaller than the job's shards
                    if not placement.sharded:
                        continue
                    part, counts = placement.stand_in(batch), 0.0  # a sharded model: every worker runs every pass
                with untouched(model) if not counts else contextlib.nullcontext():  # restored after backward
                    with placement.autocast():
                        sampled = task.sampled_targets(model, part, generator)
                        loss = task.example_losses(model, sampled, reduction="sum").sum()
                    (loss.float() / max(n, 1) * counts).backward()
        placement.sync_gradients(params)
        if chain is not None:  # a curve's bends: the gradients the step itself sees
            chain()
        opt.update_hessian(targets=n)
        opt.zero_grad(set_to_none=True)

    return after_step
