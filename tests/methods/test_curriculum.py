import math

import numpy as np
import pytest
import torch

from mcu_ray.methods.curriculum import CurriculumParams, SuperLoss, forget_order, forget_reducer, superloss_confidence


def test_superloss_confidence_closed_form():
    sigma = superloss_confidence(np.array([5.0, -1e6, 4.0, 6.0]), tau=5.0, lam=10.0)
    assert sigma[0] == pytest.approx(1.0)  # at the running mean: W(0) = 0
    assert sigma[1] == pytest.approx(math.e, rel=1e-5)  # clamped at -2/e: W(-1/e) = -1
    assert sigma[2] > 1 > sigma[3]  # easier than average counts more, harder less
    # sigma* solves d/dsigma [(o - tau) sigma + lam log^2 sigma] = 0
    o, tau, lam = 7.0, 5.0, 10.0
    s = superloss_confidence(np.array([o]), tau, lam)[0]
    assert (o - tau) + 2 * lam * math.log(s) / s == pytest.approx(0.0, abs=1e-9)


def authors_sigma(losses, tau, lam=10.0):
    """The authors' confidence written out with scipy: exp(-W(max(-2/e, (l - tau)/lam) / 2))."""
    from scipy.special import lambertw

    x = np.maximum(-2 / math.e, (np.asarray(losses) - tau) / lam)
    return np.exp(-lambertw(x / 2).real)


def test_gradient_ascent_with_superloss_weighs_the_examples_still_fitted_most():
    """Issue 12: sigma from the positive losses 0.05, 0.5, 2, 6 (tau = their mean on a first batch)
    is about 1.13, 1.09, 1.01, 0.85, and GA ascends -mean(sigma l) (MU-Bench grad_ascent.py:27-36)."""
    from mcu_ray.methods import ga
    from mcu_ray.methods.common import LossContext

    losses = torch.tensor([0.05, 0.5, 2.0, 6.0], requires_grad=True)

    class Task:
        @staticmethod
        def example_losses(forward, batch, reduction="mean"):
            return losses

    ctx = LossContext(Task(), None, None, torch.Generator(), reduce_forget=forget_reducer("cl", CurriculumParams()))
    loss, _ = ga.loss(ctx, {}, None, ga.Params())
    sigma = authors_sigma([0.05, 0.5, 2.0, 6.0], tau=np.mean([0.05, 0.5, 2.0, 6.0]))
    assert sigma == pytest.approx([1.13, 1.09, 1.01, 0.85], abs=0.01)
    assert loss.item() == pytest.approx(-(sigma * [0.05, 0.5, 2.0, 6.0]).mean(), rel=1e-6)
    loss.backward()
    assert losses.grad.numpy() == pytest.approx(-sigma / 4, rel=1e-6)  # sigma is a constant weight


def test_superloss_tau_is_the_authors_cumulative_ratio():
    """mode='avg': tau = the first batch's mean, then sum of all past losses / sum of all past sigmas."""
    reduce = SuperLoss(lam=10.0)
    first, second, third = np.array([0.0, 2.0]), np.array([3.0, 5.0]), np.array([1.0, 1.0])
    out = reduce(torch.tensor(first))
    s1 = authors_sigma(first, tau=1.0)
    assert out.item() == pytest.approx(float((s1 * first).mean()))
    tau_2 = first.sum() / s1.sum()
    assert reduce.tau == pytest.approx(tau_2)
    out = reduce(torch.tensor(second))
    s2 = authors_sigma(second, tau=tau_2)
    assert out.item() == pytest.approx(float((s2 * second).mean()))
    assert reduce.tau == pytest.approx((first.sum() + second.sum()) / (s1.sum() + s2.sum()))
    reduce(torch.tensor(third))
    assert reduce.total == pytest.approx(first.sum() + second.sum() + third.sum())


def test_orderings_and_defaults():
    losses = torch.tensor([0.5, 0.1, 0.9])
    assert forget_order("cl", CurriculumParams(kind="easy_to_hard"), losses).tolist() == [1, 0, 2]
    assert forget_order("cl", CurriculumParams(kind="hard_to_easy"), losses).tolist() == [2, 0, 1]
    assert forget_order("cl", CurriculumParams(), losses) is None and forget_order("none", None, losses) is None
    assert isinstance(forget_reducer("cl", CurriculumParams()), SuperLoss)  # SuperLoss is the default curriculum
    assert forget_reducer("none", None)(torch.tensor([1.0, 3.0])).item() == 2.0
