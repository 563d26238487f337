"""Where a process computes: its device, its numeric precision and its share of a data-parallel job.

One ``Placement`` is decided per process, here: ``ray_placement`` for Ray's processes (Ray
Train's device in a training worker, the GPU Ray gave an evaluation task), ``Placement()``
(default CUDA when present) or an explicit device for plain calls (tests, benchmarks); it is
handed to every loop.
Models, teachers, control points and batches go to ``placement.device``; stored
artifacts stay CPU safetensors and load onto any device.

Strategy (how a job of several workers holds the model; not part of the key, the step is the same):
- ``ddp``: every worker holds the whole model and optimiser state; gradients are summed in one
  flattened all-reduce per step (``sync_gradients``);
- ``fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``): the trained model's parameters,
  gradients and optimiser state are sharded over the workers (each transformer block its own
  unit), for models whose training state does not fit one device. Every worker then runs every
  forward pass (``sharded``), the gradients are reduce-scattered (summed) in the backward pass,
  and the full weights are gathered to rank 0 at the end (``gather``). Frozen teachers stay whole
  on every worker.

Precision (part of every artifact's key, since it changes the numbers):
- ``fp32``: plain float32;
- ``bf16-mixed``: float32 master weights and optimiser state, forward and loss under
  bfloat16 autocast (the usual way to train on a GPU);
- ``bf16``: weights, gradients and optimiser state in bfloat16 (half the memory).

``PRECISIONS`` and ``STRATEGIES`` live here, beside what each means; the spec checks a sweep file
against them, importing them only when it parses (as it does the registries), so that loading the
spec module needs no torch.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from mcu_ray.batches import batch_length, shard, to_device, trim_padding

PRECISIONS = ("fp32", "bf16-mixed", "bf16")  # what each means: above
STRATEGIES = ("ddp", "fsdp")  # how a job of several workers holds its model: above


def default_device(gpu: bool | None = None) -> torch.device:
    """CUDA when this process has a GPU, else the CPU. ``gpu``: whether Ray gave it one (an
    evaluation task); None: whether it sees one."""
    return torch.device("cuda" if (torch.cuda.is_available() if gpu is None else gpu) else "cpu")


def planless_attention() -> None:
    """Keep PyTorch's attention off its cuDNN backend in this process (flash and memory-efficient remain).

    cuDNN's attention builds an execution plan for every new sequence length, about 6 ms of CPU
    per call on an H200; length-grouped batches and the KV cache's growing length make nearly
    every call new, so a 24-layer phi-1.5 step spent 0.3 s of its 0.5 s building plans
    (torch.profiler, bench/gpu.py). The flash and memory-efficient kernels need no plan.
    """
    torch.backends.cuda.enable_cudnn_sdp(False)


def ray_placement(role: str, grad_accum: int = 1, strategy: str = "ddp") -> "Placement":
    """The placement of a Ray process, decided here and nowhere else (Ray imported on use only).

    ``role``: "train" (a Ray Train worker: the device Ray Train assigned, the worker's rank and
    the job's size), "local" (a training job in Train's local mode, inside a Tune trial, where
    Ray Train's context is Tune's: this process's default device, one worker) or "task" (an
    evaluation task: the GPU Ray gave it, which CUDA_VISIBLE_DEVICES makes cuda:0, else the CPU).
    """
    import ray

    if role == "train":
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        return Placement(device=ray.train.torch.get_device(), rank=context.get_world_rank(),
                         world_size=context.get_world_size(), grad_accum=grad_accum, strategy=strategy)
    if role == "local":
        return Placement(grad_accum=grad_accum)
    if role == "task":
        return Placement(device=default_device(gpu=bool(ray.get_gpu_ids())))
    raise ValueError(f"role {role!r} is not one of train, local, task")


@contextlib.contextmanager
def untouched(model: nn.Module, *stateful):
    """A pass that leaves no trace: ``model``'s buffers (BatchNorm running statistics) and the
    attributes of ``stateful`` objects (SuperLoss's running sums) are restored after it. A sharded
    worker's stand-in pass (``Placement.stand_in``) runs in it, so it counts for nothing."""
    buffers = [(b, b.clone()) for b in model.buffers()]
    states = [(obj, dict(vars(obj))) for obj in stateful if hasattr(obj, "__dict__")]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for obj, saved in states:
            vars(obj).update(saved)


@dataclass(frozen=True)
class Placement:
    device: torch.device = field(default_factory=default_device)
    precision: str = "fp32"
    rank: int = 0  # this worker's rank in a data-parallel job
    world_size: int = 1  # workers in the job; each takes its shard of every global batch
    grad_accum: int = 1  # micro-batches per worker per optimiser step
    strategy: str = "ddp"  # how a job of several workers holds the trained model: ddp | fsdp

    def __post_init__(self):
        object.__setattr__(self, "device", torch.device(self.device))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r} is not one of {STRATEGIES}")
        if self.device.type == "cuda":
            planless_attention()

    def with_precision(self, precision: str) -> "Placement":
        """This placement computing at an artifact's precision."""
        return dataclasses.replace(self, precision=precision)

    def on(self, device) -> "Placement":
        """This placement building on ``device`` (``build_device``: the host, for a model to be sharded)."""
        return dataclasses.replace(self, device=torch.device(device))

    def replicated(self) -> "Placement":
        """This placement holding its model whole on every worker: a curve's or a pathway's bends,
        whose forward pass combines whole control points (``curves.curve_forward``), which FSDP2
        cannot shard; they train data-parallel instead."""
        return dataclasses.replace(self, strategy="ddp")

    @property
    def sharded(self) -> bool:
        """Whether the trained model is sharded over the job's workers (FSDP2)."""
        return self.strategy == "fsdp" and self.world_size > 1

    @property
    def build_device(self) -> torch.device:
        """Where a trained model is built and loaded: the device, or, for a sharded model, the host
        (``shard_model`` then moves each worker's shard to the device; the whole never is)."""
        return torch.device("cpu") if self.sharded else self.device

    def shard_model(self, model: nn.Module) -> nn.Module:
        """The model, sharded over the job's workers when ``sharded`` (else as it is).

        Every module of a class the model names in ``_no_split_modules`` (Hugging Face's
        transformer blocks) is its own FSDP unit, then the root (embeddings, head, tied weights).
        FSDP2's reduce-scatter averages by default; the divide factor 1 (with a plain SUM
        reduction, which gloo supports too) makes it the sum ``run_steps`` weights its
        micro-batches for, as ``sync_gradients`` does.
        """
        if not self.sharded:
            return model
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.device.type, (self.world_size,))
        blocks = {name for module in model.modules() for name in getattr(module, "_no_split_modules", None) or ()}
        for module in list(model.modules()):
            if module is not model and type(module).__name__ in blocks:
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        for module in model.modules():
            if hasattr(module, "set_gradient_divide_factor"):
                module.set_gradient_divide_factor(1.0)
                module.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no PREMUL_SUM
        return model

    def gather(self, model: nn.Module, rebuild) -> nn.Module | None:
        """After training: the model whole, on rank 0 (the only writer). A sharded model's full
        weights are gathered (a collective: every worker calls this) into ``rebuild()``, a fresh
        unsharded model on the device; other ranks get None. Unsharded: the model itself."""
        if not self.sharded:
            return model
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.writes:
            return None
        whole = rebuild()
        whole.load_state_dict(state)
        return whole

    def like(self, tensor: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``value`` (a whole tensor: a gradient mask) laid out as ``tensor``: on its device, and
        sharded as it is when it is a sharded parameter."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        if isinstance(tensor, DTensor):
            return distribute_tensor(value.to(tensor.device), tensor.device_mesh, tensor.placements)
        return value.to(tensor.device)

    def stand_in(self, batch: dict | None) -> dict | None:
        """The first example of a global batch: what a worker whose micro-batch is empty runs,
        with weight 0 and ``untouched``, when the model is sharded (every worker must run every
        forward pass, for FSDP's collectives)."""
        return None if batch is None else self.batch(trim_padding(shard(batch, 0, batch_length(batch))))

    @property
    def writes(self) -> bool:
        """Only rank 0 writes artifacts and ledger records."""
        return self.rank == 0

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of weights (and so of the optimiser state)."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def model(self, module: nn.Module) -> nn.Module:
        """``module`` on this device, its floating tensors in this precision's weight dtype."""
        return module.to(device=self.device, dtype=self.dtype)

    def tensors(self, params: dict) -> dict:
        """A parameter dict (control points, teachers' weights) on this device, float32 kept as stored."""
        return to_device(params, self.device)

    def batch(self, batch: dict | None) -> dict | None:
        """A batch on this device; with precision bf16 its float inputs (pixels) in bfloat16 too."""
        batch = to_device(batch, self.device)
        if batch is None or self.precision != "bf16":
            return batch
        return {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in batch.items()}

    def autocast(self):
        """The context the forward pass and loss run in."""
        if self.precision != "bf16-mixed":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @property
    def shards(self) -> int:
        """How many micro-batches one global batch is split into across the job."""
        return self.world_size * self.grad_accum

    def micro_batches(self, batch: dict | None) -> list:
        """This worker's ``grad_accum`` slices of a global batch, on the device."""
        if batch is None:
            return [None] * self.grad_accum
        return [self.batch(trim_padding(shard(batch, self.rank * self.grad_accum + i, self.shards)))
                for i in range(self.grad_accum)]

    def sum_over_workers(self, value: torch.Tensor) -> torch.Tensor:
        """A scalar summed over the job's workers (the step's loss: every worker sees the
        same value, so a NaN on one shard stops all of them together)."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(value)
        return value

    def sync_gradients(self, tensors) -> None:
        """Sum the gradients of ``tensors`` over the job's workers (no-op on one worker, and for a
        sharded model, whose backward pass reduce-scattered them already).

        Flattened into one buffer per dtype, so a step costs one all-reduce whatever the
        number of tensors (gloo on CPU workers, NCCL on GPUs).
        """
        if self.world_size == 1 or self.sharded:
            return
        import torch.distributed as dist

        grads = []
        for tensor in tensors:
            if tensor.grad is None:
                tensor.grad = torch.zeros_like(tensor)
            grads.append(tensor.grad)
        for dtype in {g.dtype for g in grads}:
            group = [g for g in grads if g.dtype == dtype]
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat)
            offset = 0
            for g in group:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
