"""What every classification task shares, against its rules by hand: the seeded forget / retain /
validation cut of the training rows, wrong labels, labels sampled from the model, and MU-Bench's
accuracies and losses from logits."""
import math

import pytest
import torch
import torch.nn.functional as F

from mcu_ray.tasks.classification import (
    ClassificationData, forget_indices, metrics_from_logits, relabel_wrong, validation_indices, zrf_score,
)
from mcu_ray.tasks.digits import TASK as DIGITS


def test_forget_sets_nest_and_never_hold_a_validation_row():
    """One permutation (seed 10000 + split_seed): its tail of 10 rows is the validation split, ratio r takes
    the first round(90 r / 100) of the rest."""
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(10_000 + 3)).tolist()
    forget, retain = forget_indices(100, 10, split_seed=3, n_validation=10)
    validation = validation_indices(100, 10, split_seed=3)
    assert forget.tolist() == sorted(perm[:9]) and validation.tolist() == sorted(perm[90:])
    assert retain.tolist() == sorted(perm[9:90])
    larger, _ = forget_indices(100, 20, split_seed=3, n_validation=10)
    assert len(larger) == 18 and set(forget.tolist()) <= set(larger.tolist())
    assert len(forget_indices(100, 0.1, split_seed=3)[0]) == 1  # at least one row


def test_the_training_split_is_forget_and_retain_in_row_order():
    train = {"x": torch.arange(6) * 10, "y": torch.zeros(6, dtype=torch.long)}
    data = ClassificationData(train, {}, torch.tensor([4]), torch.tensor([0, 2, 5]), 2, torch.tensor([1, 3]))
    assert data.split("train")["x"].tolist() == [0, 20, 40, 50]
    assert data.split("validation")["x"].tolist() == [10, 30]
    assert ClassificationData(train, {}, torch.tensor([4]), torch.tensor([0]), 2).split("train") is train


def test_relabelled_targets_are_always_wrong_and_cover_every_other_class():
    data = ClassificationData({}, {}, torch.zeros(0), torch.zeros(0), num_classes=4)
    y = torch.full((400,), 2)
    relabelled = relabel_wrong({"x": torch.zeros(400), "y": y}, data, torch.Generator().manual_seed(0))["y"]
    assert not (relabelled == y).any()
    assert set(relabelled.tolist()) == {0, 1, 3}


def test_sampled_targets_follow_the_models_softmax():
    """Logits log(0.2), log(0.8): about 80 % of 4000 draws are class 1 (three standard deviations: 0.019)."""
    logits = torch.log(torch.tensor([[0.2, 0.8]])).expand(4000, 2)
    batch = {"x": logits, "y": torch.zeros(4000, dtype=torch.long)}
    sampled = DIGITS.sampled_targets(lambda x: x, batch, torch.Generator().manual_seed(1))["y"]
    assert sampled.float().mean().item() == pytest.approx(0.8, abs=0.019)


def test_accuracies_and_losses_from_logits():
    """Per split: accuracy the share of argmax == label, loss the mean of -log softmax at the label
    (no loss on test); ZRF from the random network's predictions."""
    logits = {"test": torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]),
              "retain": torch.tensor([[0.0, 2.0], [1.0, 0.0]]),
              "forget": torch.tensor([[0.0, 0.0], [4.0, 1.0]])}
    labels = {"test": torch.tensor([0, 0, 0]), "retain": torch.tensor([1, 0]), "forget": torch.tensor([1, 1])}
    random = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    metrics = metrics_from_logits(logits, labels, random)

    def nll(row, label):
        return math.log(sum(math.exp(v) for v in row)) - row[label]

    assert metrics["acc_test"] == pytest.approx(2 / 3)
    assert metrics["acc_retain"] == 1.0 and metrics["acc_forget"] == 0.0  # argmax of a tie is the first class
    assert "loss_test" not in metrics
    assert metrics["loss_retain"] == pytest.approx((nll([0.0, 2.0], 1) + nll([1.0, 0.0], 0)) / 2, rel=1e-6)
    assert metrics["loss_forget"] == pytest.approx((nll([0.0, 0.0], 1) + nll([4.0, 1.0], 1)) / 2, rel=1e-6)
    assert metrics["zrf"] == pytest.approx(zrf_score(F.softmax(logits["forget"], -1), random))
    assert metrics.examples["forget"]["correct"].tolist() == [False, False]
    assert metrics.examples["retain"]["loss"].tolist() == pytest.approx([nll([0.0, 2.0], 1), nll([1.0, 0.0], 0)],
                                                                        rel=1e-6)
