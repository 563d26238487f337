"""FSDP2 (``strategy: fsdp``) on two gloo CPU workers, without Ray: sharding changes where the
model lives, not the step.

The same 2-worker jobs run sharded (fsdp) and whole on each worker (ddp, which
tests/test_data_parallel.py holds to one process with two micro-batches, through the CLI), and
must store the same weights: SU's gradient mask is laid onto the shards, and the batch sizes
leave some micro-batches empty, where a sharded worker must still run the forward pass (with
weight 0, its BatchNorm statistics untouched). Both runs are spawned alike. One process at
grad_accum 2 is not compared here: its thread count (set by whatever ran before in the test
process) changes the float summation order, and AdamW then moves a digits convolution's bias,
whose gradient before BatchNorm is float noise, by a noise-sized step either way.
"""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from mcu_ray import jobs
from mcu_ray.placement import Placement
from mcu_ray.plan import make_plan
from mcu_ray.spec import load_spec
from mcu_ray.store import Store

SPEC = {"name": "fsdp", "settings": ["Met"], "curves": ["linear"], "points": 3,
        "tasks": [{"name": "digits", "ratios": [10], "methods": ["su", "ga"],
                   "options": {"epochs": 1, "batch_size": 34},  # 1293 rows in D: its last batch has 1 row, rank 0's shard empty
                   "hparams": {"su": {"steps": 3, "batch_size": 5, "retain_batch_size": 9, "mask_ratio": 0.3}}}]}
# FO: Sophia's clipped step lr * sign(m) moves a parameter whose gradient is 0 up to float noise (a
# convolution's bias before BatchNorm) by +-lr, in whichever direction the summation order's noise
# points, so no two reduction orders (sharded or not) agree on it.


def plan_items(spec_file):
    plan = make_plan(load_spec(spec_file))
    endpoint = next(e for e in plan.endpoints.values() if e.method == "su")
    return plan.originals[endpoint.original], plan.retrained[endpoint.retrained], endpoint


def worker(rank: int, strategy: str, spec_file: str, storage: str, rendezvous: str, shapes: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        original, retrained, endpoint = plan_items(spec_file)
        placement = Placement("cpu", rank=rank, world_size=2, strategy=strategy)
        store = Store(storage)
        jobs.build_original(store, original, placement)
        if rank == 0:  # the endpoint's evaluation reads it (an ordinary one-process job)
            jobs.build_retrained(store, retrained, Placement("cpu"))
        dist.barrier()
        jobs.build_endpoint(store, endpoint, placement)
        model = placement.shard_model(jobs.TASKS["digits"].new_model(jobs.TASKS["digits"].Options(), seed=0))
        shapes[rank] = {n: tuple(getattr(p, "to_local", lambda: p)().shape) for n, p in model.named_parameters()}
    finally:
        dist.destroy_process_group()


def two_workers(strategy: str, spec_file, tmp_path) -> tuple[Store, dict]:
    shapes = mp.Manager().dict()
    mp.start_processes(worker, args=(strategy, str(spec_file), str(tmp_path / strategy), str(tmp_path / f"{strategy}.rdzv"),
                                     shapes), nprocs=2, start_method="spawn")
    return Store(str(tmp_path / strategy)), dict(shapes)


def assert_same(a: dict, b: dict, names, key: str) -> None:
    for name in names:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=f"{key} {name}")


def test_fsdp_jobs_store_what_data_parallel_jobs_store(tmp_path):
    spec_file = tmp_path / "fsdp.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    original, _, endpoint = plan_items(spec_file)
    sharded, shapes = two_workers("fsdp", spec_file, tmp_path)
    replicated, _ = two_workers("ddp", spec_file, tmp_path)
    for key in (original.key, endpoint.key):
        meta = sharded.read_meta(key)
        assert (meta["strategy"], meta["workers"], meta.get("status", "ok")) == ("fsdp", 2, "ok"), key
        a = replicated.load_weights(key)
        assert_same(a, sharded.load_weights(key), a, f"fsdp vs ddp {key}")  # parameters and rank 0's BatchNorm statistics

    full = {n: tuple(p.shape) for n, p in jobs.TASKS["digits"].new_model(jobs.TASKS["digits"].Options(), seed=0).named_parameters()}
    # each worker held its half of every parameter (dim 0 sharded, the first shard the larger)
    for name, shape in full.items():
        assert shapes[0][name][0] + shapes[1][name][0] == shape[0] and shapes[0][name][0] == -(-shape[0] // 2), name
