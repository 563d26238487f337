"""MU-Bench tasks on small local data in the Hugging Face hub layout (no network)."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mcu_ray import jobs
from mcu_ray.errors import SpecError
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.tasks.classification import forget_indices_from_file
from tests.helpers import REPO, write_hub_folder

SHARED_DF = Path(os.environ.get("MCU_MUBENCH_DF_DIR", REPO / ".." / "shared/data/mubench_df"))


@pytest.fixture(scope="module")
def shared_lists() -> Path:
    if not (SHARED_DF / "cifar10.txt").is_file():
        pytest.fail(f"MU-Bench index lists not found at {SHARED_DF}: check out shared/ beside the repo "
                    "or set MCU_MUBENCH_DF_DIR")
    return SHARED_DF


@pytest.mark.parametrize("name,size", [("cifar10", 50000), ("ddi", 25296), ("nlvr2", 86364)])  # training-set sizes
def test_mubench_index_lists(shared_lists, name, size):
    listed = [int(x) for x in open(shared_lists / f"{name}.txt") if x.strip()]
    forget2, retain2 = forget_indices_from_file(str(shared_lists / f"{name}.txt"), size, 2)
    forget10, _ = forget_indices_from_file(str(shared_lists / f"{name}.txt"), size, 10)
    assert len(forget10) == len(listed) and len(forget2) == round(len(listed) / 5)
    assert set(forget2.tolist()) == set(listed[: len(forget2)]) <= set(forget10.tolist())  # first r/10 of the list
    assert len(forget2) + len(retain2) == size and set(forget2.tolist()).isdisjoint(retain2.tolist())
    with pytest.raises(ValueError, match="indices"):
        forget_indices_from_file(str(shared_lists / f"{name}.txt"), 100, 2)  # list beyond a 100-row dataset


@pytest.mark.parametrize("name", ["cifar10", "ddi", "nlvr2"])
def test_task_trains_unlearns_and_evaluates_from_hub_layout(tmp_path, name):
    torch.set_num_threads(1)
    folder = write_hub_folder(tmp_path, name)
    index_file = tmp_path / "forget.txt"
    index_file.write_text("\n".join(str(i) for i in (3, 7, 11, 19, 23)) + "\n")  # 10 % of 48 rows, MU-Bench style
    spec = parse_spec({"name": "m", "settings": ["Rand"], "tasks": [{
        "name": name, "ratios": [10], "methods": ["rl"],
        "options": {"dataset": str(folder), "forget_index_file": str(index_file), "image_size": 16,
                    "max_length": 12, "vocab_size": 300, "hidden_size": 16, "epochs": 2, "batch_size": 16},
        "hparams": {"rl": {"epochs": 1, "lr": 1e-3}}}]})
    plan = make_plan(spec)
    store = jobs.Store(str(tmp_path / "store"))
    jobs.build_original(store, next(iter(plan.originals.values())))
    retrained = jobs.build_retrained(store, next(iter(plan.retrained.values())))
    endpoint = jobs.build_endpoint(store, next(iter(plan.endpoints.values())))
    for metrics in (retrained["metrics"], endpoint["metrics"]):
        assert set(metrics) == {"acc_test", "acc_retain", "acc_forget", "zrf", "loss_retain", "loss_forget",
                                "mia_efficacy", "mia_loss"}
        assert all(np.isfinite(v) for v in metrics.values())
    task, _, data = jobs.task_data(name, spec.tasks[0].options, 10)
    assert data.forget_idx.tolist() == [3, 7, 11, 19, 23]
    curve = next(c for c in plan.curves.values() if not c.trained)
    for key in (curve.endpoint_1, curve.endpoint_2):
        if not store.has_artifact(key):
            jobs.build_endpoint(store, plan.endpoints[key])
    assert len(jobs.evaluate_curve_serially(store, curve)) == spec.points - 2


def test_mubench_spec_checks(tmp_path):
    with pytest.raises(SpecError, match=r"tasks\[0\].options.dataset: got ''; ddi has no default"):
        parse_spec({"name": "m", "settings": ["Rand"], "tasks": [{"name": "ddi", "ratios": [2], "methods": ["ga"]}]})
    with pytest.raises(SpecError, match=r"options.dataset: got '/nope'; no such folder"):
        parse_spec({"name": "m", "settings": ["Rand"], "tasks": [
            {"name": "cifar10", "ratios": [2], "methods": ["ga"], "options": {"dataset": "/nope"}}]})
    spec = parse_spec({"name": "m", "settings": ["Rand"], "tasks": [{"name": "cifar10", "ratios": [2], "methods": ["ga"]}]})
    assert spec.tasks[0].options["dataset"] == ""  # the default hub id, uoft-cs/cifar10, is used at load time
