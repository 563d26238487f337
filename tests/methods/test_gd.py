"""GD (gradient difference) against its formula: L = -gamma reduce(forget losses) + alpha mean(retain losses)."""
import pytest
import torch

from mcu_ray.methods import METHODS, gd
from mcu_ray.methods.common import LossContext

FORGET = {"loss": torch.tensor([1.0, 3.0])}
RETAIN = {"loss": torch.tensor([0.2, 0.4, 0.9])}


class Stored:
    """A task whose 'model' returns the batch's stored per-example losses."""

    @staticmethod
    def example_losses(forward, batch, reduction="mean"):
        return forward(batch)


@pytest.mark.parametrize("gamma,alpha", [(1.0, 1.0), (0.5, 2.0)])
def test_gd_ascends_on_df_and_descends_on_dr(gamma, alpha):
    ctx = LossContext(Stored(), None, lambda batch: batch["loss"], torch.Generator())
    loss, logs = gd.loss(ctx, FORGET, RETAIN, gd.Params(gamma=gamma, alpha=alpha))
    assert loss.item() == pytest.approx(-gamma * 2.0 + alpha * 0.5)
    assert (logs["forget_loss"].item(), logs["retain_loss"].item()) == pytest.approx((2.0, 0.5))
    assert METHODS["gd"].draws_retain(gd.Params())
