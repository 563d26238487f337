"""GA (gradient ascent on Df) against its formula: L = -reduce(forget losses), mean by default,
the curriculum's reducer when one weighs the examples."""
import pytest
import torch

from mcu_ray.methods import METHODS, ga
from mcu_ray.methods.common import LossContext

FORGET = {"loss": torch.tensor([0.5, 2.0, 3.5])}


class Stored:
    """A task whose 'model' returns the batch's stored per-example losses."""

    @staticmethod
    def example_losses(forward, batch, reduction="mean"):
        return forward(batch)


def context(**kwargs) -> LossContext:
    return LossContext(Stored(), None, lambda batch: batch["loss"], torch.Generator(), **kwargs)


def test_ga_ascends_the_mean_forget_loss():
    loss, logs = ga.loss(context(), FORGET, None, ga.Params())
    assert loss.item() == pytest.approx(-(0.5 + 2.0 + 3.5) / 3)
    assert logs["forget_loss"].item() == pytest.approx(2.0)
    assert not METHODS["ga"].draws_retain(ga.Params())


def test_a_curriculum_reduces_the_forget_losses_its_way():
    """The reducer replaces the mean in the loss; the logged forget loss stays the plain mean."""
    loss, logs = ga.loss(context(reduce_forget=lambda losses: (losses * torch.tensor([1.0, 0.0, 0.5])).sum()),
                         FORGET, None, ga.Params())
    assert loss.item() == pytest.approx(-(0.5 + 0.5 * 3.5))
    assert logs["forget_loss"].item() == pytest.approx(2.0)
