"""NPO (Zhang et al. 2024) against its formula: L = -(2/beta) mean log sigmoid(beta (nll - nll_ref)),
the paper's NPO without a retain term, open-unlearning's with alpha * retain NLL."""
import math

import pytest
import torch

from mcu_ray.methods import METHODS, npo
from mcu_ray.methods.common import LossContext


class Stored:
    """A task whose 'model' returns stored per-example values: summed NLL for the trained model
    and the frozen original, token-mean loss on retain batches."""

    @staticmethod
    def example_losses(forward, batch, reduction="mean"):
        return forward(batch, reduction)


def trained(batch, reduction):
    return batch["nll"] if reduction == "sum" else batch["mean_nll"]


def original(batch, reduction):
    return batch["nll_ref"]


FORGET = {"nll": torch.tensor([3.0, 10.0, 0.5]), "nll_ref": torch.tensor([3.0, 4.0, 2.0])}
RETAIN = {"mean_nll": torch.tensor([0.2, 0.6])}


def by_hand(beta, gamma, alpha):
    npo_term = sum(-(2 / beta) * math.log(1 / (1 + math.exp(-beta * (a - b))))
                   for a, b in zip([3.0, 10.0, 0.5], [3.0, 4.0, 2.0])) / 3
    return gamma * npo_term + alpha * (0.2 + 0.6) / 2


def context():
    return LossContext(Stored(), None, trained, torch.Generator(), original_forward=original)


def test_equal_likelihoods_give_two_over_beta_log_two():
    out = npo.npo_forget_losses(torch.tensor([3.0]), torch.tensor([3.0]), beta=0.1)
    assert out.item() == pytest.approx(20 * math.log(2), rel=1e-6)


def test_the_papers_npo_has_no_retain_term_and_draws_no_retain_batch():
    params = npo.Params()
    assert params.alpha == 0
    loss, logs = npo.loss(context(), FORGET, None, params)
    assert loss.item() == pytest.approx(by_hand(0.1, 1.0, 0.0), rel=1e-6)
    assert "retain_loss" not in logs
    assert not METHODS["npo"].draws_retain(params)


def test_retain_regularised_npo_adds_alpha_times_the_retain_nll():
    params = npo.Params(alpha=2.0, gamma=0.5, beta=0.3)
    loss, logs = npo.loss(context(), FORGET, RETAIN, params)
    assert loss.item() == pytest.approx(by_hand(0.3, 0.5, 2.0), rel=1e-6)
    assert logs["retain_loss"].item() == pytest.approx(0.4)
    assert METHODS["npo"].draws_retain(params)
