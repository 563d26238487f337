import math

import numpy as np
import pytest
import torch

from mcu_ray.methods.curriculum import SuperLoss, forget_order, forget_reducer, superloss_confidence


def test_superloss_confidence_closed_form():
    sigma = superloss_confidence(np.array([5.0, -1e6, 4.0, 6.0]), tau=5.0, lam=10.0)
    assert sigma[0] == pytest.approx(1.0)  # at the running mean: W(0) = 0
    assert sigma[1] == pytest.approx(math.e, rel=1e-5)  # clamped at -2/e: W(-1/e) = -1
    assert sigma[2] > 1 > sigma[3]  # easier than average counts more, harder less
    # sigma* solves d/dsigma [(o - tau) sigma + lam log^2 sigma] = 0
    o, tau, lam = 7.0, 5.0, 10.0
    s = superloss_confidence(np.array([o]), tau, lam)[0]
    assert (o - tau) + 2 * lam * math.log(s) / s == pytest.approx(0.0, abs=1e-9)


def test_superloss_reduction_tracks_tau():
    reduce = SuperLoss(lam=1.0, tau_momentum=0.5)
    objective = torch.tensor([0.0, 2.0], requires_grad=True)
    out = reduce(objective)
    assert reduce.tau == pytest.approx(1.0)  # first batch: tau = its mean
    sigma = superloss_confidence(np.array([0.0, 2.0]), 1.0, 1.0)
    assert out.item() == pytest.approx(float((sigma * np.array([0.0, 2.0])).mean()))
    out.backward()
    assert objective.grad.numpy() == pytest.approx(sigma / 2)  # the confidence is a constant weight
    reduce(torch.tensor([3.0, 3.0]))
    assert reduce.tau == pytest.approx(0.5 * 1.0 + 0.5 * 3.0)


def test_orderings_and_defaults():
    losses = torch.tensor([0.5, 0.1, 0.9])
    assert forget_order("cl", {"kind": "easy_to_hard"}, losses).tolist() == [1, 0, 2]
    assert forget_order("cl", {"kind": "hard_to_easy"}, losses).tolist() == [2, 0, 1]
    assert forget_order("cl", {}, losses) is None and forget_order("none", None, losses) is None
    assert isinstance(forget_reducer("cl", {}), SuperLoss)  # SuperLoss is the default curriculum
    assert forget_reducer("none", None)(torch.tensor([1.0, 3.0])).item() == 2.0
