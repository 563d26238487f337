import numpy as np
import pytest

from mcu_ray.barriers import chord_deviation, curve_verdict, summarise_metric, verdict_word

DIRECTIONS = {"loss_retain": -1, "loss_forget": +1, "acc_test": +1}


def rows(retain, forget, acc):
    t = np.linspace(0, 1, len(retain))
    return [{"t": ti, "loss_retain": r, "loss_forget": f, "acc_test": a} for ti, r, f, a in zip(t, retain, forget, acc)]


def test_hand_made_barrier_and_cliff():
    # t = 0, .25, .5, .75, 1; retain chord 1 -> 2 is 1.25 at t=.25, 1.5 at .5
    curve = rows(retain=[1.0, 1.25, 2.5, 1.75, 2.0],  # bump of 1.0 above the chord at t=.5
                 forget=[4.0, 3.0, 3.0, 1.0, 2.0],  # chord 4 -> 2: 3.5, 3.0, 2.5 ; worst drop 1.5 at t=.75
                 acc=[0.9, 0.8, 0.9, 0.9, 0.9])  # chord flat 0.9; worst drop 0.1 at t=.25
    v = curve_verdict(curve, DIRECTIONS, "loss_retain", "loss_forget", tolerance=0.0)
    assert v.retain_barrier == pytest.approx(1.0)
    assert v.forget_barrier == pytest.approx(1.5)
    assert not v.mcu
    acc = next(m for m in v.metrics if m.metric == "acc_test")
    assert acc.deviation == pytest.approx(0.1) and acc.argmax_t == pytest.approx(0.25)
    assert (acc.minimum, acc.maximum, acc.start, acc.end) == pytest.approx((0.8, 0.9, 0.9, 0.9))
    assert acc.mean == pytest.approx(0.88)
    # Garipov's integral along t, by the trapezoid rule over the 5 points (h = 0.25) written out
    retain = next(m for m in v.metrics if m.metric == "loss_retain")
    assert retain.integral == pytest.approx(0.25 * (1.0 / 2 + 1.25 + 2.5 + 1.75 + 2.0 / 2))


def test_convex_retain_and_concave_forget_satisfy_mcu():
    t = np.linspace(0, 1, 16)
    curve = [{"t": ti, "loss_retain": 1 + ti - 0.3 * ti * (1 - ti), "loss_forget": 2 + 0.5 * ti * (1 - ti),
              "acc_test": 0.9} for ti in t]
    v = curve_verdict(curve, DIRECTIONS, "loss_retain", "loss_forget", tolerance=0.0)
    assert v.mcu
    assert v.retain_barrier == pytest.approx(0.0) and v.forget_barrier == pytest.approx(0.0)


def test_tolerance_decides_the_verdict():
    curve = rows([1.0, 1.55, 2.0], [2.0, 2.0, 2.0], [0.9, 0.9, 0.9])  # retain bump of 0.05
    assert not curve_verdict(curve, DIRECTIONS, "loss_retain", "loss_forget", 0.01).mcu
    assert curve_verdict(curve, DIRECTIONS, "loss_retain", "loss_forget", 0.1).mcu


def test_sign_convention_positive_is_bad():
    t = np.array([0, 0.5, 1.0])
    assert chord_deviation(t, np.array([1.0, 0.5, 1.0]), +1)[1] == pytest.approx(0.5)  # accuracy dip: bad
    assert chord_deviation(t, np.array([1.0, 0.5, 1.0]), -1)[1] == pytest.approx(-0.5)  # loss dip: good


def test_unsorted_points_and_nan():
    s = summarise_metric("m", [1.0, 0.0, 0.5], [3.0, 1.0, float("nan")], -1)
    assert s.start == 1.0 and s.end == 3.0 and s.deviation == pytest.approx(0.0)
    with pytest.raises(ValueError, match="t=0 and t=1"):
        summarise_metric("m", [0.0, 0.5], [1.0, 2.0], -1)


def test_barrier_flag_per_family():
    from mcu_ray.barriers import barrier

    assert barrier("accuracy", 0.01, 0.02, 0.5, 0.9, 0.9) and not barrier("loss", 0.05, 0.02, 1.0, 1.0, 1.0)
    # Forget Quality: falling under the significance level counts, not the size of the dip
    assert barrier("forget_quality", 0.05, 0.3, 0.01, 0.5, 0.4)
    assert not barrier("forget_quality", 0.05, 0.4, 0.1, 0.5, 0.9)  # a large dip, still above 0.05
    assert not barrier("forget_quality", 0.05, 0.01, 0.001, 0.02, 0.5)  # an endpoint is below already
    assert list(barrier("score", 0.01, np.array([0.0, 0.5, np.nan]), 0, 0, 0)) == [False, True, False]


def test_verdict_words_are_the_reports():
    """Retain side above tolerance: a barrier; forget side: a cliff (the paper's Eq. 3/4 words)."""
    assert verdict_word(0.0, 0.005, 0.01) == "MCU"
    assert verdict_word(0.5, 0.0, 0.01) == "barrier"
    assert verdict_word(0.0, 0.2, 0.01) == "cliff"
    assert verdict_word(0.5, 0.2, 0.01) == "barrier + cliff"
