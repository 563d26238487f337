"""RL (random labelling) against its formula: the mean loss over relabelled forget examples and retain
examples together, (n_f reduce(relabelled) + sum(retain)) / (n_f + n_r)."""
import pytest
import torch

from mcu_ray.methods import METHODS, rl
from mcu_ray.methods.common import LossContext


class Relabelling:
    """A task whose 'model' returns stored per-example losses, and whose relabelled forget batch
    carries the losses of its wrong targets (drawn from the loop's generator, as a task's are)."""

    @staticmethod
    def example_losses(forward, batch, reduction="mean"):
        return forward(batch)

    @staticmethod
    def relabel(batch, data, generator):
        return {"loss": batch["loss"] + torch.rand(len(batch["loss"]), generator=generator)}


def test_rl_trains_relabelled_forget_and_retain_examples_as_one_batch():
    forget, retain = {"loss": torch.tensor([1.0, 2.0])}, {"loss": torch.tensor([0.1, 0.2, 0.3, 0.4])}
    ctx = LossContext(Relabelling(), None, lambda batch: batch["loss"], torch.Generator().manual_seed(4))
    loss, logs = rl.loss(ctx, forget, retain, rl.Params())
    relabelled = forget["loss"] + torch.rand(2, generator=torch.Generator().manual_seed(4))
    assert loss.item() == pytest.approx((relabelled.sum().item() + 1.0) / 6)
    assert logs["relabelled_loss"].item() == pytest.approx(relabelled.mean().item())
    assert logs["retain_loss"].item() == pytest.approx(0.25)
    assert METHODS["rl"].draws_retain(rl.Params())
