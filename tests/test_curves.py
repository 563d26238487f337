import torch
from torch import nn

from mcu_ray.curves import (bezier_coefficients, curve_forward, curve_parameters, initial_bend, load_point,
                            point_on_curve)


def params(seed):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 2, generator=g), "b": torch.randn(3, generator=g)}


def test_endpoints_and_bezier_midpoint():
    t1, bend, t2 = params(0), params(1), params(2)
    for name in t1:
        assert torch.equal(point_on_curve([t1, bend, t2], 0.0)[name], t1[name])
        assert torch.equal(point_on_curve([t1, bend, t2], 1.0)[name], t2[name])
        assert torch.equal(point_on_curve([t1, t2], 0.0)[name], t1[name])
        assert torch.equal(point_on_curve([t1, t2], 1.0)[name], t2[name])
        half = point_on_curve([t1, bend, t2], 0.5)[name]
        assert torch.allclose(half, 0.25 * t1[name] + 0.5 * bend[name] + 0.25 * t2[name])
        assert torch.allclose(point_on_curve([t1, t2], 0.25)[name], 0.75 * t1[name] + 0.25 * t2[name])


def test_coefficients_sum_to_one_and_match_bernstein():
    for t in (0.0, 0.3, 0.5, 1.0):
        c = bezier_coefficients(t, 2)
        assert abs(sum(c) - 1) < 1e-12
        assert c == [(1 - t) ** 2, 2 * t * (1 - t), t ** 2]


def test_bend_on_chord_gives_a_straight_line():
    t1, t2 = params(0), params(2)
    bend = initial_bend(t1, t2)
    for t in (0.2, 0.7):
        quad, line = point_on_curve([t1, bend, t2], t), point_on_curve([t1, t2], t)
        assert all(torch.allclose(quad[n], line[n]) for n in t1)


def test_forward_at_t_equals_model_loaded_with_phi_t():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    names = curve_parameters(model)
    ends = [{n: torch.randn_like(p) for n, p in model.named_parameters()} for _ in range(3)]
    x = torch.randn(7, 4)
    out = curve_forward(model, ends, 0.3)(x)
    by_hand = {n: 0.7 ** 2 * ends[0][n] + 2 * 0.3 * 0.7 * ends[1][n] + 0.3 ** 2 * ends[2][n] for n in names}
    reference = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    load_point(reference, ends, 0.3)
    assert all(torch.allclose(dict(reference.named_parameters())[n], by_hand[n], atol=1e-6) for n in names)
    assert torch.allclose(out, reference(x), atol=1e-6)
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_gradient_reaches_only_the_bend():
    model = nn.Linear(3, 1)
    t1 = {n: p.detach().clone() for n, p in model.named_parameters()}
    t2 = {n: p + 1 for n, p in t1.items()}
    bend = {n: p.clone().requires_grad_(True) for n, p in initial_bend(t1, t2).items()}
    curve_forward(model, [t1, bend, t2], 0.5)(torch.ones(2, 3)).sum().backward()
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in bend.values())
    assert all(p.grad is None for p in model.parameters())
