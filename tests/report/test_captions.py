"""Captions say what the figures show with the numbers the figures use: the tolerances given, the seeds,
the pruned trials, and the corner of a Pareto plot that is better for the objectives' directions."""
from mcu_ray.report import captions
from mcu_ray.spec import Tolerances


def test_the_setting_caption_quotes_the_tolerances_and_the_seeds():
    text = captions.setting_caption("digits", "Met", Tolerances(loss=0.25, forget_quality=0.01), seeds=3)
    assert text.startswith("digits · Met: ")
    assert "neither exceeds 0.25 nats" in text and "dash-dot p = 0.01 line" in text
    assert "mean over the 3 seeds" in text
    assert "One seed: no spread band." in captions.setting_caption("digits", "Met", Tolerances(), seeds=1)


def test_the_barrier_caption_quotes_the_loss_tolerance():
    assert "within the loss tolerance (0.5 nats)" in captions.barrier_caption("tofu", Tolerances(loss=0.5))


def test_the_history_caption_counts_pruned_trials_and_the_best_so_far_line():
    one = captions.search_history_caption("digits", "ga", [("gap", "min")], pruned_valued=2, pruned_bare=1)
    assert "gap (lower is better)" in one and "best value found so far" in one
    assert "Grey crosses: 2 trial(s)" in one and "Grey ticks on the x axis: 1 pruned" in one
    two = captions.search_history_caption("digits", "ga", [("a", "min"), ("b", "max")], 0, 0)
    assert "No best-so-far line" in two and "No trial was pruned." in two


def test_the_better_corner_follows_both_directions():
    corners = {(dx, dy): captions.search_pareto_caption("d", "ga", [("x", dx), ("y", dy)], "rule")
               for dx in ("min", "max") for dy in ("min", "max")}
    assert "toward the bottom left corner" in corners["min", "min"]
    assert "toward the top left corner" in corners["min", "max"]
    assert "toward the bottom right corner" in corners["max", "min"]
    assert "toward the top right corner" in corners["max", "max"]
    three = captions.search_pareto_caption("d", "ga", [("x", "min"), ("y", "min"), ("z", "max")], "rule")
    assert "all 3 objectives and only the first two are drawn" in three
