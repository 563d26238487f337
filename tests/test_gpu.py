"""A digits cell and a TOFU cell on CUDA through the real CLI (skipped on machines without a GPU; their
sweep file is checked and planned on any machine).

Training jobs get a GPU worker from Ray Train, evaluation tasks a share of the GPU; every
trained artifact must record that it was computed on CUDA at bf16-mixed (the precision
``auto`` resolves to when a sweep asks for GPUs), and every result row must be ok.
"""
import subprocess
import sys

import pytest
import torch
import yaml

from mcu_ray.plan import make_plan
from mcu_ray.spec import load_spec
from mcu_ray.store import Store
from mcu_ray.tables import read_table
from tests.helpers import tiny_digits_task


def cuda_cells(spec_file) -> None:
    """A sweep file of one digits and one TOFU cell, their jobs on a GPU worker, evaluations on a GPU share."""
    spec_file.write_text(yaml.safe_dump({
        "name": "gpu", "settings": ["Rand"], "points": 4,
        "tasks": [tiny_digits_task(ratios=[10], methods=["ga"], hparams={"ga": {"epochs": 1}}),
                  {"name": "tofu", "ratios": [10], "methods": ["gd"],
                   "options": {"synthetic_authors": 4, "eval_size": 8, "n_layer": 1, "n_embd": 32, "vocab_size": 300,
                               "epochs": 2, "max_new_tokens": 4},
                   "hparams": {"gd": {"steps": 3}}, "curve_fit": {"epochs": 1, "batch_size": 8}}],
        "resources": {"max_concurrent_trials": 2, "trial_cpus": 0.25, "eval_cpus": 0.5, "eval_gpus": 0.25,
                      "train": {"num_workers": 1, "use_gpu": True, "resources_per_worker": {"CPU": 1, "GPU": 1}}}}))


def test_the_cuda_cells_plan_on_any_machine(tmp_path):
    """The CUDA test's sweep file passes the CLI's checks and plans its two cells, so that a session
    lent a GPU spends its minutes running it (one once stopped at a bad hyper-parameter block)."""
    spec_file = tmp_path / "gpu.yaml"
    cuda_cells(spec_file)
    done = subprocess.run([sys.executable, "-m", "mcu_ray.sweep", str(spec_file), "--storage", str(tmp_path / "runs"),
                           "--dry-run", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(make_plan(load_spec(spec_file)).cells) == 2


@pytest.mark.gpu
@pytest.mark.ray
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_digits_and_a_tofu_cell_run_on_cuda(tmp_path):
    spec_file = tmp_path / "gpu.yaml"
    cuda_cells(spec_file)
    storage = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "mcu_ray.sweep", str(spec_file), "--storage", str(storage),
                           "--no-report"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    plan, store = make_plan(load_spec(spec_file)), Store(str(storage))
    trained = [*plan.originals, *plan.retrained, *plan.endpoints]
    for key in trained:
        meta = store.read_meta(key)
        assert (meta["device"], meta["precision"]) == ("cuda", "bf16-mixed"), key
    rows = read_table(store, "gpu", "results").to_pylist()
    assert {r["task"] for r in rows} == {"digits", "tofu"} and {r["status"] for r in rows} == {"ok"}
