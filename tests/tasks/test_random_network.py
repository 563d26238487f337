"""The random network (Bad Teaching's incompetent teacher, ZRF's reference) is random, and the
retrained model of an already fine-tuned checkpoint is never the original itself.

Checkpoints are tiny ones saved into tmp_path with save_pretrained: no network access.
"""
from dataclasses import replace

import pytest
import torch

from mcu_ray import jobs
from mcu_ray.errors import SpecError
from mcu_ray.placement import Placement
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.tasks import TASKS
from mcu_ray.tasks.base import random_network
from mcu_ray.tasks.classification import predict_proba
from tests.helpers import write_hub_folder

CPU = Placement(device="cpu")


def pretrained_checkpoint(folder, task: str, seed: int = 0) -> str:
    """A tiny checkpoint of the task's architecture whose every float tensor was moved away from its
    initial value (as pretraining would: LayerNorm at 1, biases and BatchNorm statistics at 0 too)."""
    import transformers as tf

    torch.manual_seed(seed)
    if task == "cifar10":
        model = tf.ResNetForImageClassification(tf.ResNetConfig(
            num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10))
    else:
        model = tf.BertForSequenceClassification(tf.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=16, num_labels=5))
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor) + 0.5)  # positive: a variance stays positive
    model.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("task_name", ["cifar10", "ddi"])
def test_random_network_shares_no_tensor_with_the_checkpoint(tmp_path, task_name):
    task = TASKS[task_name]
    options = task.Options(model=pretrained_checkpoint(tmp_path / "ckpt", task_name))
    checkpoint = task.new_model(options, seed=0).state_dict()
    random = task.random_model(options, seed=1).state_dict()
    assert random.keys() == checkpoint.keys()
    floats = [name for name, tensor in checkpoint.items() if tensor.is_floating_point()]
    assert floats and all(random[name].shape == checkpoint[name].shape for name in floats)
    assert [name for name in floats if torch.equal(random[name], checkpoint[name])] == []
    # the old random teacher (new_model: from_pretrained) kept the pretrained backbone
    assert any(torch.equal(task.new_model(options, seed=1).state_dict()[name], checkpoint[name]) for name in floats)


@pytest.mark.parametrize("task_name", ["cifar10", "ddi"])
def test_random_network_is_a_function_of_its_seed(tmp_path, task_name):
    task = TASKS[task_name]
    options = task.Options(model=pretrained_checkpoint(tmp_path / "ckpt", task_name))

    def weights(seed):
        return task.random_model(options, seed=seed).state_dict()

    first, again, other = weights(5), weights(5), weights(6)
    assert all(torch.equal(first[name], again[name]) for name in first)
    randomised = [name for name in first if first[name].is_floating_point() and first[name].std() > 0]
    assert randomised and all(not torch.equal(first[name], other[name]) for name in randomised)


def test_bad_teaching_teacher_is_zrf_reference(tmp_path):
    """Same network, same seed, BatchNorm at its initial statistics in both (Chundawat et al.'s code)."""
    task = TASKS["cifar10"]
    folder = write_hub_folder(tmp_path, "cifar10", n_train=24, n_test=8)
    options = task.Options(dataset=str(folder), model=pretrained_checkpoint(tmp_path / "ckpt", "cifar10"),
                           image_size=16, model_seed=3)
    data = task.load(options, 10)
    original = task.new_model(options, seed=0).state_dict()
    teacher = jobs.teachers(task, options, "bt", lambda: original, CPU).random
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    norms = [m for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) and
                         torch.equal(m.running_var, torch.ones_like(m.running_var)) for m in norms)
    expected = task.random_model(options, seed=3 + 7919).state_dict()
    assert all(torch.equal(teacher.state_dict()[name], expected[name]) for name in expected)
    zrf_reference = task.eval_context(options, data, None, CPU)
    assert torch.equal(zrf_reference, predict_proba(teacher, data.split("forget"), CPU, task.logits))
    assert torch.equal(zrf_reference, task.eval_context(options, data, None, CPU))  # and a function of the seed
    assert torch.equal(random_network(task, options).state_dict()["classifier.1.weight"],
                       expected["classifier.1.weight"])


def _spec(options: dict):
    return parse_spec({"name": "m", "settings": ["Rand"], "tasks": [
        {"name": "cifar10", "ratios": [10], "methods": ["ga"], "options": options}]})


def test_epochs_zero_needs_a_reference_model(tmp_path):
    checkpoint = pretrained_checkpoint(tmp_path / "ckpt", "cifar10")
    with pytest.raises(SpecError, match=r"tasks\[0\]\.options\.epochs: got 0; epochs 0 keeps the checkpoint "
                                        r"as the original; the retrained model then needs reference_model"):
        _spec({"model": checkpoint, "epochs": 0})
    with pytest.raises(SpecError, match=r"options\.reference_model: got '/nope'; no such folder"):
        _spec({"model": checkpoint, "epochs": 0, "reference_model": "/nope"})
    reference = pretrained_checkpoint(tmp_path / "retain_only", "cifar10", seed=1)
    spec = _spec({"model": checkpoint, "epochs": 0, "reference_model": reference})
    assert spec.tasks[0].options.reference_model == reference


def test_retrained_reference_is_the_reference_model(tmp_path):
    """epochs 0: the original is the checkpoint, the retrained model the retain-only checkpoint."""
    torch.set_num_threads(1)
    folder = write_hub_folder(tmp_path, "cifar10", n_train=24, n_test=8)
    checkpoint = pretrained_checkpoint(tmp_path / "ckpt", "cifar10")
    reference = pretrained_checkpoint(tmp_path / "retain_only", "cifar10", seed=1)
    spec = _spec({"dataset": str(folder), "model": checkpoint, "epochs": 0, "reference_model": reference,
                  "image_size": 16})
    plan = make_plan(spec)
    store = jobs.Store(str(tmp_path / "store"))
    jobs.build_original(store, next(iter(plan.originals.values())))
    jobs.build_retrained(store, next(iter(plan.retrained.values())))
    task, options = TASKS["cifar10"], spec.tasks[0].options
    for key, model in ((next(iter(plan.originals)), checkpoint), (next(iter(plan.retrained)), reference)):
        # parameters: evaluating the retrained model re-estimates its BatchNorm statistics on Dr
        stored, expected = store.load_weights(key), dict(task.new_model(replace(options, model=model), seed=0)
                                                         .named_parameters())
        shared = [name for name in stored if name in expected]
        assert shared and all(torch.equal(stored[name].float(), expected[name].float()) for name in shared)
    original, retrained = (store.load_weights(key) for key in (next(iter(plan.originals)), next(iter(plan.retrained))))
    assert not torch.equal(original["classifier.1.weight"], retrained["classifier.1.weight"])
