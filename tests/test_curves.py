import numpy as np
import pytest
import torch
from torch import nn

from mcu_ray.curves import (arc_length_density, arc_length_sampler, bezier_coefficients, curve_forward, curve_length,
                            initial_bends,
                            curve_parameters, initial_bend, load_point, load_state, point_on_curve, speed,
                            speed_gram)


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


# ----------------------------------------------------------------------------- arc length (paper, Appendix 9)

def test_arc_length_density_matches_the_derivative_of_a_hand_made_bezier_curve():
    """q(t) = ||phi'(t)|| / int ||phi'|| for phi(t) = (1-t)^2 p0 + 2t(1-t) p1 + t^2 p2 in the plane,
    with phi'(t) = 2(1-t)(p1 - p0) + 2t(p2 - p1) written out and integrated by scipy here."""
    from scipy.integrate import quad

    p0, p1, p2 = np.array([0.0, 0.0]), np.array([1.0, 2.0]), np.array([2.0, 0.0])
    control = [{"x": torch.tensor([p[0]]), "y": torch.tensor([p[1]])} for p in (p0, p1, p2)]  # split over tensors

    def speed_by_hand(t):
        return np.linalg.norm(2 * (1 - t) * (p1 - p0) + 2 * t * (p2 - p1))

    length = quad(speed_by_hand, 0, 1)[0]
    ts = np.linspace(0, 1, 2001)
    expected = np.array([speed_by_hand(t) for t in ts]) / length
    assert np.allclose(arc_length_density(control, ts), expected, rtol=1e-5)
    assert curve_length(control) == pytest.approx(length, rel=1e-5)
    # the curve moves fastest at its ends (|phi'| = 2 sqrt(1 + (2 - 4t)^2)): samples crowd there
    draws = np.array([arc_length_sampler(control, torch.Generator().manual_seed(s)) for s in range(400)])
    assert np.mean((draws < 0.25) | (draws > 0.75)) > 0.6  # uniform t would give 0.5


def test_a_bend_on_the_chord_weighs_every_t_alike():
    g = torch.Generator().manual_seed(0)
    t1, t2 = {"w": torch.randn(5, 3, generator=g)}, {"w": torch.randn(5, 3, generator=g)}
    ts = np.linspace(0, 1, 11)
    assert np.allclose(arc_length_density([t1, initial_bend(t1, t2), t2], ts), 1.0)


# ----------------------------------------------------------------------------- LoRA curves live in B @ A space

def lora_model():
    import peft

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    return peft.get_peft_model(base, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"]))


def random_adapters(model, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters() if p.requires_grad}


def added_weight(point, module):
    """scale * B @ A of one adapted module, materialised (what the test compares against)."""
    prefix = f"base_model.model.{module}"
    return 2.0 * point[f"{prefix}.lora_B.default.weight"] @ point[f"{prefix}.lora_A.default.weight"]


def test_a_linear_lora_curve_is_linear_in_the_added_weights():
    model = lora_model()
    ends = [random_adapters(model, 1), random_adapters(model, 2)]
    x = torch.randn(5, 4)
    for t in (0.0, 0.3, 0.5, 1.0):
        point = point_on_curve(ends, t)
        for module in ("0", "2"):
            expected = (1 - t) * added_weight(ends[0], module) + t * added_weight(ends[1], module)
            assert torch.allclose(added_weight(point, module), expected, atol=1e-6)
        # the same point through the model: base weights plus the interpolated added weights, by hand
        w0, b0 = model.base_model.model[0].base_layer.weight, model.base_model.model[0].base_layer.bias
        w2, b2 = model.base_model.model[2].base_layer.weight, model.base_model.model[2].base_layer.bias
        mixed = {m: (1 - t) * added_weight(ends[0], m) + t * added_weight(ends[1], m) for m in ("0", "2")}
        hidden = torch.relu(x @ (w0 + mixed["0"]).T + b0)
        assert torch.allclose(curve_forward(model, ends, t)(x), hidden @ (w2 + mixed["2"]).T + b2, atol=1e-5)


def test_lora_bend_starts_on_the_chord_and_points_load_and_unload():
    model = lora_model()
    ends = [random_adapters(model, 1), random_adapters(model, 2)]
    bend = initial_bend(*ends)
    for module in ("0", "2"):
        chord = (added_weight(ends[0], module) + added_weight(ends[1], module)) / 2
        assert torch.allclose(added_weight(bend, module), chord, atol=1e-6)
    x = torch.randn(5, 4)
    with torch.no_grad():
        load_point(model, [ends[0], bend, ends[1]], 0.4)  # a rank-4r adapter in place
        assert torch.allclose(model(x), curve_forward(model, [ends[0], bend, ends[1]], 0.4)(x), atol=1e-5)
        load_state(model, ends[1])  # an endpoint again: the adapters' own rank
        assert torch.allclose(model(x), curve_forward(model, ends, 1.0)(x), atol=1e-5)


def test_lora_speed_is_that_of_the_materialised_curve():
    """||phi'(t)|| from rank-sized inner products equals a finite difference of the added weights."""
    model = lora_model()
    control = [random_adapters(model, s) for s in (1, 2, 3)]
    gram = speed_gram(control)
    for t in (0.2, 0.7):
        h = 1e-4
        delta = [(added_weight(point_on_curve(control, t + h), m) - added_weight(point_on_curve(control, t - h), m))
                 / (2 * h) / 2.0 for m in ("0", "2")]  # scale 2 left out, as in inner()
        by_hand = float(torch.sqrt(sum((d.double() ** 2).sum() for d in delta)))
        assert speed(gram, np.array([t]))[0] == pytest.approx(by_hand, rel=1e-3)


# ----------------------------------------------------------------------------- more bends, polygonal chains

def test_polychain_runs_straight_through_its_points():
    p = [params(0), params(1), params(2)]
    for name in p[0]:
        assert torch.allclose(point_on_curve(p, 0.25, "polychain")[name], 0.5 * p[0][name] + 0.5 * p[1][name])
        assert torch.allclose(point_on_curve(p, 0.5, "polychain")[name], p[1][name])
        assert torch.allclose(point_on_curve(p, 0.9, "polychain")[name], 0.2 * p[1][name] + 0.8 * p[2][name])


def test_polychain_density_is_each_segments_length_over_the_total():
    """On segment k, phi'(t) = n (theta_{k+1} - theta_k): q is ||d_k|| / mean_k ||d_k||, piecewise."""
    p = [{"w": torch.tensor([0.0, 0.0])}, {"w": torch.tensor([3.0, 4.0])}, {"w": torch.tensor([4.0, 4.0])}]
    lengths = [5.0, 1.0]
    ts = np.array([0.1, 0.4, 0.6, 0.9])
    expected = [lengths[0] / 3.0, lengths[0] / 3.0, lengths[1] / 3.0, lengths[1] / 3.0]  # mean length 3
    assert np.allclose(arc_length_density(p, ts, "polychain"), expected, rtol=2e-3)
    assert curve_length(p, "polychain") == pytest.approx(6.0, rel=1e-3)


def test_several_bends_start_on_the_chord_for_both_kinds():
    t1, t2 = params(0), params(2)
    bends = initial_bends(t1, t2, 3)
    for kind in ("bezier", "polychain"):
        for t in (0.1, 0.45, 0.8):
            on_curve, line = point_on_curve([t1, *bends, t2], t, kind), point_on_curve([t1, t2], t)
            assert all(torch.allclose(on_curve[n], line[n], atol=1e-6) for n in t1)


def test_a_lora_chord_point_adds_the_interpolated_weight():
    model = lora_model()
    ends = [random_adapters(model, 1), random_adapters(model, 2)]
    for s in (1 / 3, 0.5):
        point = initial_bends(*ends, 2)[0] if s == 1 / 3 else initial_bend(*ends)
        for module in ("0", "2"):
            expected = (1 - s) * added_weight(ends[0], module) + s * added_weight(ends[1], module)
            assert torch.allclose(added_weight(point, module), expected, atol=1e-6)


def test_the_authors_bend_step_moves_each_bend_along_dl_dphi_at_its_weighted_rate():
    """MU-Bench trainer/base.py:147-154: dL/dphi(t) copied to the bend, lr * 2t(1-t); with two bends
    of a cubic Bezier curve each gets its own Bernstein weight 3t(1-t)^2, 3t^2(1-t)."""
    from mcu_ray.methods.optimizers import make_optimizer
    from mcu_ray.train import bend_weight_step

    bends = [{"w": torch.zeros(3, requires_grad=True)}, {"w": torch.zeros(3, requires_grad=True)}]
    opt = make_optimizer("fo", bends, lr=0.1, weight_decay=0.0)
    t, dl_dphi = 0.3, torch.tensor([1.0, -2.0, 0.5])
    weights = [3 * t * (1 - t) ** 2, 3 * t ** 2 * (1 - t)]
    for bend, w in zip(bends, weights):
        bend["w"].grad = w * dl_dphi  # what autograd gives through phi(t)
    bend_weight_step(opt, [0.1, 0.1], weights)
    for group, bend, w in zip(opt.param_groups, bends, weights):
        assert group["lr"] == pytest.approx(0.1 * w)
        assert torch.allclose(bend["w"].grad, dl_dphi)
    opt.step()  # Adam's first step is lr * sign(gradient): each bend moves by its weighted rate
    for bend, w in zip(bends, weights):
        assert torch.allclose(bend["w"].detach(), -0.1 * w * torch.sign(dl_dphi), rtol=1e-4)


def test_a_chain_bend_off_the_drawn_segment_does_not_step():
    """Polygonal chain of two bends at t = 0.2: only the first bend is on the drawn segment (hat
    weights 1 - |3t - 1| = 0.6 and 0); the second gets no gradient, so neither Adam's moments nor
    its weights move."""
    from mcu_ray.curves import coefficients
    from mcu_ray.methods.optimizers import make_optimizer
    from mcu_ray.train import bend_weight_step

    bends = [{"w": torch.zeros(2, requires_grad=True)}, {"w": torch.zeros(2, requires_grad=True)}]
    opt = make_optimizer("fo", bends, lr=0.1, weight_decay=0.0)
    weights = coefficients(0.2, 3, "polychain")[1:-1]
    assert weights == pytest.approx([0.6, 0.0])
    bends[0]["w"].grad, bends[1]["w"].grad = torch.tensor([0.6, -0.6]), torch.tensor([0.0, 0.0])
    bend_weight_step(opt, [0.1, 0.1], weights)
    assert bends[1]["w"].grad is None and torch.allclose(bends[0]["w"].grad, torch.tensor([1.0, -1.0]))
    opt.step()
    assert torch.equal(bends[1]["w"].detach(), torch.zeros(2)) and not opt.state[bends[1]["w"]]
    assert torch.allclose(bends[0]["w"].detach(), torch.tensor([-0.06, 0.06]), rtol=1e-4)
