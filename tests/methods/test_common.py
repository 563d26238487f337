"""What every method shares: the loop knobs' checks, whether a method draws retain batches, what its
loss context hands it, and the summed gradient over a split (against the closed form of a linear
softmax classifier)."""
import re

import pytest
import torch
from torch import nn

from mcu_ray.methods.common import LossContext, Method, UnlearnParams, split_gradients
from mcu_ray.placement import Placement
from mcu_ray.errors import SpecError


@pytest.mark.parametrize("field,value,words", [
    ("steps", -1, "expected 0 (use epochs)"), ("epochs", 0, "integer >= 1"), ("batch_size", 0, "integer >= 1"),
    ("retain_batch_size", 0, "integer >= 1"), ("lr", 0.0, "positive learning rate"),
    ("weight_decay", -0.1, "non-negative"),
])
def test_loop_knobs_are_checked_with_their_path(field, value, words):
    with pytest.raises(SpecError, match=re.escape(words)) as err:
        UnlearnParams(**{field: value}).check("tasks[0].hparams.ga")
    assert err.value.path == f"tasks[0].hparams.ga.{field}"
    UnlearnParams().check("tasks[0].hparams.ga")  # the defaults pass


def test_draws_retain_is_a_flag_or_a_rule_on_the_params():
    by_rule = Method("m", UnlearnParams, None, uses_retain=lambda p: p.retain_batch_size > 8)
    assert by_rule.draws_retain(UnlearnParams(retain_batch_size=16))
    assert not by_rule.draws_retain(UnlearnParams(retain_batch_size=4))
    assert Method("m", UnlearnParams, None, uses_retain=True).draws_retain(UnlearnParams())


class CrossEntropy:
    @staticmethod
    def example_losses(model, batch, reduction="mean"):
        return nn.functional.cross_entropy(model(batch["x"]), batch["y"], reduction="none")

    @staticmethod
    def logits(forward, batch):
        return forward(batch["x"])


def test_sequence_nll_of_the_original_carries_no_gradient():
    model = nn.Linear(2, 3)
    batch = {"x": torch.ones(2, 2), "y": torch.tensor([0, 2])}
    ctx = LossContext(CrossEntropy(), None, model, torch.Generator(), original_forward=model)
    assert ctx.sequence_nll(batch).requires_grad
    assert not ctx.sequence_nll(batch, original=True).requires_grad
    torch.testing.assert_close(ctx.losses(batch), CrossEntropy.example_losses(model, batch))


def test_split_gradients_sum_the_per_example_gradients():
    """For logits W x + b and cross-entropy, dL/dW = sum_i (p_i - onehot_i) x_i^T, dL/db = sum_i (p_i - onehot_i)."""
    torch.manual_seed(0)
    model = nn.Linear(2, 3)
    split = {"x": torch.randn(5, 2), "y": torch.tensor([0, 1, 2, 1, 0])}
    grads = split_gradients(model, CrossEntropy(), split, Placement("cpu"), batch_size=2)  # three minibatches
    with torch.no_grad():
        residual = torch.softmax(model(split["x"]), -1) - nn.functional.one_hot(split["y"], 3)  # (5, 3)
    torch.testing.assert_close(grads["weight"], residual.T @ split["x"])
    torch.testing.assert_close(grads["bias"], residual.sum(0))
    assert all(p.grad is None for p in model.parameters())  # .grad left cleared
