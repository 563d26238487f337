"""Several curve points per vectorised pass give the numbers of one point at a time.

The one-by-one path (``evaluate_one_by_one``: load phi(t), re-estimate BatchNorm on Dr,
evaluate) is the reference; the vmapped path must agree on every metric, on the digits
conv net, on a ResNet-18-sized Hugging Face ResNet (11M parameters, BatchNorm everywhere) and
on a small BERT with padded rows (DDI's model family).
"""
import dataclasses
import time

import pytest
import torch

from mcu_ray.placement import Placement
from mcu_ray.tasks.base import evaluate_one_by_one
from mcu_ray.tasks.classification import ClassificationTask, hf_logits
from mcu_ray.tasks.digits import TASK as DIGITS
from tests.helpers import random_control_points

TS = [0.0, 0.2, 0.5, 0.9]


def compare(task, options, data, tolerance: float):
    placement = Placement("cpu")
    context = task.eval_context(options, data, None, placement)
    control_points = random_control_points(task, options)
    batched = task.evaluate_curve(task.new_model(options, seed=0), options, data, context, placement,
                                  control_points, TS, vectorize=True)
    single = evaluate_one_by_one(task, task.new_model(options, seed=0), options, data, context, placement,
                                 control_points, TS)
    assert [r["t"] for r in batched] == TS
    for one, many in zip(single, batched):
        assert set(one) == set(many)
        for name in one:
            assert many[name] == pytest.approx(one[name], abs=tolerance), (one["t"], name)
    return single


def test_vmapped_points_match_one_by_one_on_digits():
    torch.set_num_threads(1)
    options = DIGITS.Options(width=8)
    rows = compare(DIGITS, options, DIGITS.load(options, 10), 1e-5)
    assert len({round(r["loss_retain"], 6) for r in rows}) == len(TS)  # the points really differ
    # the membership attacks too: an SVC fitted per point (MIA-efficacy) and the loss attack's AUC
    assert {"mia_efficacy", "mia_loss"} <= set(rows[0])
    assert len({round(r["mia_loss"], 6) for r in rows}) == len(TS)


@dataclasses.dataclass(frozen=True)
class ResNetOptions:
    split_seed: int = 0
    model_seed: int = 0


def resnet18_task() -> ClassificationTask:
    """A ResNet-18 (HF ResNetConfig at resnet-18's sizes, random init) on 32x32 random images."""
    def load_arrays(opts):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(96, 3, 32, 32, generator=g), torch.randint(0, 10, (96,), generator=g)
        return {"pixel_values": x[:64], "y": y[:64]}, {"pixel_values": x[64:], "y": y[64:]}, 10

    def build_model(opts):
        from transformers import ResNetConfig, ResNetForImageClassification

        return ResNetForImageClassification(ResNetConfig(
            num_channels=3, embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2],
            layer_type="basic", num_labels=10))

    return ClassificationTask(name="resnet18", Options=ResNetOptions, load_arrays=load_arrays,
                              build_model=build_model, default_ratios=(10,), default_hparams={}, logits=hf_logits)


def test_vmapped_points_match_one_by_one_on_a_resnet18():
    torch.set_num_threads(2)
    task = resnet18_task()
    assert sum(p.numel() for p in task.new_model(ResNetOptions(), seed=0).parameters()) > 11_000_000
    compare(task, ResNetOptions(), task.load(ResNetOptions(), 10), 1e-4)


def bert_task() -> ClassificationTask:
    """A small BERT sequence classifier (DDI's model family) on random padded token rows."""
    def load_arrays(opts):
        g = torch.Generator().manual_seed(0)
        ids, lengths = torch.randint(1, 100, (48, 16), generator=g), torch.randint(4, 17, (48,), generator=g)
        mask = (torch.arange(16)[None, :] < lengths[:, None]).long()
        y = torch.randint(0, 5, (48,), generator=g)
        batch = {"input_ids": ids * mask, "attention_mask": mask, "y": y}
        return {k: v[:32] for k, v in batch.items()}, {k: v[32:] for k, v in batch.items()}, 5

    def build_model(opts):
        from transformers import BertConfig, BertForSequenceClassification

        return BertForSequenceClassification(BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=16, num_labels=5))

    return ClassificationTask(name="bert", Options=ResNetOptions, load_arrays=load_arrays, build_model=build_model,
                              default_ratios=(10,), default_hparams={}, logits=hf_logits)


def test_vmapped_points_match_one_by_one_on_a_bert_classifier():
    torch.set_num_threads(1)
    task = bert_task()
    compare(task, ResNetOptions(), task.load(ResNetOptions(), 10), 1e-5)


def test_the_faster_way_is_measured_warm_once_and_kept():
    """A call with enough points runs each way once untimed, then once timed, and keeps the faster;
    later calls use the kept way alone; a shorter call goes one by one without deciding. Here the
    first one-by-one call is slow (a cold start), later ones fast: one by one must win."""
    from mcu_ray.tasks import vectorized

    calls = []

    def one(ts):
        calls.append(("one", list(ts)))
        time.sleep(0.2 if len(calls) == 1 else 0.001)  # only the process's first call pays a cold start
        return [{"t": t} for t in ts]

    def vmap(ts):
        calls.append(("vmap", list(ts)))
        time.sleep(0.02 * len(ts))
        return [{"t": t} for t in ts]

    key = ("test", object())
    ts = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert [r["t"] for r in vectorized.faster_of(one, vmap, ts, key)] == ts  # timed cold, vmap would win
    assert calls == [("one", [0.1]), ("vmap", [0.2, 0.3]), ("one", [0.4]), ("vmap", [0.5, 0.6]), ("one", [0.7])]
    calls.clear()
    vectorized.faster_of(one, vmap, [0.5, 0.6], key)
    assert calls == [("one", [0.5, 0.6])]
    calls.clear()
    other = ("test", object())
    assert [r["t"] for r in vectorized.faster_of(one, vmap, ts[:5], other)] == ts[:5]  # too few to time warm
    assert calls == [("one", ts[:5])] and other not in vectorized._VMAP_FASTER
