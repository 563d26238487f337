"""Data-parallel training jobs: two gloo CPU workers through the real CLI.

Two workers each take half of every global batch and sum their gradients; one worker with
two gradient-accumulation micro-batches sees exactly the same halves. So the original
and the endpoint a 2-worker job stores must equal, to float tolerance, the ones a single
process builds with grad_accum 2. The model is TOFU's tiny GPT-2 (LayerNorm): with
BatchNorm, running statistics are per worker (rank 0's are stored) and would differ.
"""
import subprocess
import sys

import pytest
import torch
import yaml

from mcu_ray import jobs
from mcu_ray.placement import Placement
from mcu_ray.plan import make_plan
from mcu_ray.spec import load_spec
from mcu_ray.store import Store
from mcu_ray.tables import read_table


def assert_same_weights(one_worker: dict, two_workers: dict) -> None:
    assert set(one_worker) == set(two_workers)
    for name, tensor in one_worker.items():
        torch.testing.assert_close(tensor, two_workers[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.ray
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_workers_match_one_worker_with_two_micro_batches(tmp_path, strategy):
    spec_file = tmp_path / "dp.yaml"
    spec_file.write_text(yaml.safe_dump({
        "name": "dp", "settings": ["Rand"], "curves": ["bezier"], "points": 3,
        "tasks": [{"name": "tofu", "ratios": [10], "methods": ["gd"],
                   "options": {"synthetic_authors": 4, "eval_size": 8, "n_layer": 1, "n_embd": 32, "vocab_size": 300,
                               "epochs": 2, "batch_size": 8, "max_new_tokens": 4},
                   "hparams": {"gd": {"steps": 3, "batch_size": 8, "retain_batch_size": 8}},
                   "curve_fit": {"epochs": 1, "batch_size": 8}}],
        "resources": {"max_concurrent_trials": 1, "trial_cpus": 0.25, "eval_cpus": 0.5, "eval_points_per_task": 1,
                      "train": {"num_workers": 2, "strategy": strategy, "resources_per_worker": {"CPU": 0.5}}}}))
    storage = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "mcu_ray.sweep", str(spec_file), "--storage", str(storage),
                           "--num-cpus", "2", "--no-report"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    plan, store = make_plan(load_spec(spec_file)), Store(str(storage))

    original = next(iter(plan.originals.values()))
    endpoint = next(e for e in plan.endpoints.values() if e.seed == 0)
    bend = jobs.bend_key(next(iter(plan.curves.values())))
    for key in (original.key, endpoint.key, bend):
        meta = store.read_meta(key)
        assert meta["workers"] == 2 and meta["grad_accum"] == 1 and meta.get("status", "ok") == "ok", key
        # FSDP shards the models that train; a curve's bends train data-parallel (placement.replicated)
        assert meta["strategy"] == (strategy if key != bend else "ddp"), key
    assert store.read_meta(endpoint.key)["effective_batch"] == 8

    single = Store(str(tmp_path / "single"))
    one_worker = Placement("cpu", grad_accum=2)
    jobs.build_original(single, original, one_worker)
    assert_same_weights(single.load_weights(original.key), store.load_weights(original.key))
    jobs.build_retrained(single, plan.retrained[endpoint.retrained], one_worker)
    jobs.build_endpoint(single, endpoint, one_worker)
    assert_same_weights(single.load_weights(endpoint.key), store.load_weights(endpoint.key))
    rows = read_table(store, "dp", "results").to_pylist()
    assert rows and {r["status"] for r in rows} == {"ok"}
