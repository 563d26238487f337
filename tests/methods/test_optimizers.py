import pytest
import torch

from mcu_ray.methods.optimizers import Sophia, make_optimizer


def one_step(p0, grad, **knobs):
    p = torch.nn.Parameter(torch.tensor([p0]))
    opt = Sophia([p], **knobs)
    p.grad = torch.tensor([grad])
    opt.step()
    return p.detach().item(), opt.state[p]


def test_sophia_clipped_step_by_hand():
    # m = 0.1 * 0.5 = 0.05; h = 0.01 * 0.25 = 0.0025; |m| / (rho h) = 500 -> clipped to 1
    p, state = one_step(1.0, 0.5, lr=0.1, beta1=0.9, beta2=0.99, rho=0.04, weight_decay=0.0)
    assert p == pytest.approx(1.0 - 0.1)
    assert state["m"].item() == pytest.approx(0.05) and state["h"].item() == pytest.approx(0.0025)


def test_sophia_unclipped_step_and_decoupled_weight_decay():
    # beta1 = beta2 = 0: m = g = 1, h = g^2 = 1; ratio = 1 / (2 * 1) = 0.5; p <- p (1 - lr wd) - lr * 0.5
    p, _ = one_step(2.0, 1.0, lr=0.1, beta1=0.0, beta2=0.0, rho=2.0, weight_decay=0.5, eps=0.0)
    assert p == pytest.approx(2.0 * (1 - 0.1 * 0.5) - 0.1 * 0.5)
    p, _ = one_step(2.0, -1.0, lr=0.1, beta1=0.0, beta2=0.0, rho=2.0, weight_decay=0.0, eps=0.0)
    assert p == pytest.approx(2.0 + 0.05)  # sign(m) sets the direction


def test_sophia_refreshes_curvature_every_period():
    p = torch.nn.Parameter(torch.tensor([0.0]))
    opt = Sophia([p], lr=0.01, beta1=0.0, beta2=0.0, rho=1.0, weight_decay=0.0, update_period=3)
    seen = []
    for g in (1.0, 2.0, 3.0, 4.0):
        p.grad = torch.tensor([g])
        opt.step()
        seen.append(opt.state[p]["h"].item())
    assert seen == [1.0, 1.0, 1.0, 16.0]  # h from steps 1 and 4 only


def test_make_optimizer_kinds():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(make_optimizer("fo", params, 1e-3, 0.0), torch.optim.AdamW)
    so = make_optimizer("so", params, 1e-3, 0.0, {"lr": 0.0, "rho": 0.05})
    assert isinstance(so, Sophia) and so.defaults["lr"] == 1e-3 and so.defaults["rho"] == 0.05
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("sgd", params, 1e-3, 0.0)
