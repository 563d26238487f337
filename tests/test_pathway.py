"""Pathway unlearning's decisions on hand-made numbers: the tensor mask, the beta rule, t*."""
import numpy as np
import pytest

from mcu_ray.pathway import BetaRule, select_t, select_tensors

# a hand-made model: four tensors, 100 parameters in all
SIZES = {"embed": 40, "attn": 30, "mlp": 20, "head": 10}
RETAIN = {"embed": 0.9, "attn": 0.1, "mlp": 0.5, "head": 0.2}
FORGET = {"embed": 5.0, "attn": 0.3, "mlp": 0.7, "head": 0.9}


def test_mask_drops_retain_critical_tensors_then_takes_forget_salient_ones():
    # k_r = 0.3: drop by retain score -> embed (40 >= 30 excluded); k = 0.3: by forget score among
    # the rest -> head (10), mlp (30 in total: enough)
    assert select_tensors(RETAIN, FORGET, SIZES, k=0.3, k_r=0.3) == ["head", "mlp"]
    # k_r = 0.5: embed (40) is not enough, mlp (60) too; the rest by forget score
    assert select_tensors(RETAIN, FORGET, SIZES, k=0.1, k_r=0.5) == ["head"]
    # no exclusion: the most forget-salient tensor first
    assert select_tensors(RETAIN, FORGET, SIZES, k=0.4, k_r=0.0) == ["embed"]
    assert select_tensors(RETAIN, FORGET, SIZES, k=1.0, k_r=0.0) == ["embed", "head", "mlp", "attn"]
    assert select_tensors(RETAIN, FORGET, SIZES, k=0.0, k_r=0.0) == []


def test_beta_rule():
    rule = BetaRule()
    assert rule(forget_acc=0.80, retain_acc=0.99, forget_baseline=0.85, retain_baseline=1.0) == 0.0
    assert rule(forget_acc=0.85, retain_acc=0.99, forget_baseline=0.85, retain_baseline=1.0) == 0.0
    # forget gap (0.90-0.85)/0.85 = 0.059 < retain gap (1-0.90)/1 = 0.10: gentle
    assert rule(forget_acc=0.90, retain_acc=0.90, forget_baseline=0.85, retain_baseline=1.0) == 0.01
    # forget gap 0.176 > retain gap 0.01: hard
    assert rule(forget_acc=1.00, retain_acc=0.99, forget_baseline=0.85, retain_baseline=1.0) == 0.5
    assert BetaRule(low=0.1, high=2.0)(1.0, 0.99, 0.85, 1.0) == 2.0


def test_t_star_on_synthetic_curves():
    ts = np.linspace(0, 1, 16)
    # a forget accuracy falling linearly from 1 to 0 and a flat retain accuracy: the retrained
    # model's 0.6 / 0.9 is met exactly at t = 0.4
    metrics = {"acc_forget": 1 - ts, "acc_retain": np.full_like(ts, 0.9)}
    t, gap = select_t(ts, metrics, {"acc_forget": 0.6, "acc_retain": 0.9})
    assert t == pytest.approx(0.4, abs=1e-3) and gap == pytest.approx(0.0, abs=1e-3)
    # a parabola with its minimum between grid points: interpolation finds it near 0.53
    loss = (ts - 0.53) ** 2
    t, _ = select_t(ts, {"loss": loss}, {"loss": 0.0})
    assert abs(t - 0.53) < 1 / 15
    # averaging two metrics pulls t* between their individual optima
    t, gap = select_t(ts, {"a": ts, "b": ts}, {"a": 0.2, "b": 0.8})
    assert gap == pytest.approx(0.3, abs=1e-3)
    # ... where every t in [0.2, 0.8] is as good: ties go to the point furthest from the original
    assert t == pytest.approx(0.8, abs=1e-3)
    # accuracies equal to the retrained model's from t = 0 to 0.4 (a plateau), worse after
    plateau = {"acc": np.where(ts <= 0.4, 1.0, 1.0 - (ts - 0.4))}
    t, gap = select_t(ts, plateau, {"acc": 1.0})
    assert gap == 0.0 and 0.4 - 1 / 15 <= t <= 0.4 + 1e-9
    # a NaN point (a diverged evaluation) is never chosen
    t, _ = select_t(ts, {"loss": np.where(np.isclose(ts, ts[8]), np.nan, (ts - ts[8]) ** 2)}, {"loss": 0.0})
    assert not ts[7] < t < ts[9]
