"""What each figure shows, read back from matplotlib's objects: panels per ratio, pair and metric
family, axis names, legends in words, the retrained model's reference lines, colours, Forget Quality's
log axis, Figure 3's method matrices, the barrier heat map, the pathway figure, seeds as a mean and a
band, and a reused figure drawing what a new one does (the synthetic sweep: ``helpers.write_report_sweep``)."""
from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from mcu_ray.report import figures
from mcu_ray.report.tables import curve_verdicts, load_sweep
from tests.helpers import PATHWAY_SOURCES
from tests.helpers import REPORT_RATIOS as RATIOS
from tests.helpers import REPORT_SETTINGS as SETTINGS
from tests.helpers import REPORT_SWEEP as SWEEP

DIGITS_METRICS = ["acc_test", "acc_retain", "acc_forget", "zrf", "loss_retain", "loss_forget"]
DIGITS_FAMILIES = 3  # accuracy, score (ZRF), loss


@pytest.fixture(scope="module")
def drawn(report_storage):
    """(results, verdicts, references) of the synthetic sweep, as the report draws them."""
    tables = load_sweep(report_storage, SWEEP)
    return tables.results, curve_verdicts(tables.results, tables.barriers, tables.tolerances), tables.references


def _setting_figure(drawn, setting):
    results, verdicts, references = drawn
    return figures.setting_figure_of("digits", setting, results[results["setting"] == setting],
                                     verdicts[verdicts["setting"] == setting], references, DIGITS_METRICS)


def _line_colours(ax) -> set:
    return {to_hex(line.get_color()) for line in ax.get_lines()}


def test_setting_figure_has_a_panel_per_ratio_pair_and_metric_family(drawn):
    fig = _setting_figure(drawn, "Met")
    axes = fig.axes
    assert len(axes) == len(RATIOS) * len(SETTINGS["Met"]) * DIGITS_FAMILIES  # no twin axes
    colours = {family: {figures.metric_colour(m) for m in DIGITS_METRICS if figures.family_of(m) == family}
               for family in ("accuracy", "score", "loss")}
    for ax in axes:
        if not ax.get_lines():  # the failed cell's shaded panels
            continue
        drawn_colours = _line_colours(ax)
        assert sum(drawn_colours <= family for family in colours.values()) == 1, drawn_colours  # one scale each
    scales = {ax.get_ylabel().split("\n")[-1]: ax.get_yscale() for ax in axes if ax.get_ylabel()}
    assert scales == {"accuracy": "linear", "ZRF ↑": "linear", "loss (nats)": "symlog"}  # ZRF alone: named
    assert [ax.get_ylabel().split("\n")[0] for ax in axes if "\n" in ax.get_ylabel()] == ["forget 2 %", "forget 10 %"]


def test_t_axis_names_both_endpoints(drawn):
    met = {ax.get_xlabel() for ax in _setting_figure(drawn, "Met").axes if ax.get_xlabel()}
    assert met == {"t = 0: GA seed 0 → t = 1: RL seed 0", "t = 0: RL seed 0 → t = 1: GA seed 0"}
    rand = {ax.get_xlabel() for ax in _setting_figure(drawn, "Rand").axes if ax.get_xlabel()}
    assert rand == {"t = 0: GA seed 0 → t = 1: GA seed 0", "t = 0: RL seed 0 → t = 1: RL seed 0"}


def test_legend_names_metrics_in_words_with_their_direction(drawn):
    fig = _setting_figure(drawn, "Rand")
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    for label in ("test accuracy ↑", "retain accuracy ↑", "forget accuracy ↓", "ZRF ↑", "retain loss ↓",
                  "forget loss ↑", "linear curve", "Bezier curve"):
        assert label in labels
    assert not any(metric in labels for metric in DIGITS_METRICS)  # no raw column names


def test_retrained_value_is_a_reference_line_for_every_metric(drawn):
    """Dotted horizontal lines at the retrained model's values (see _write_references), in the metric's colour."""
    ax = _setting_figure(drawn, "Rand").axes[0]  # ratio 2 %, GA, accuracy panel
    dotted = {(to_hex(line.get_color()), line.get_ydata()[0]) for line in ax.get_lines() if line.get_linestyle() == ":"}
    assert dotted == {(figures.metric_colour("acc_test"), 0.95), (figures.metric_colour("acc_retain"), 1.0),
                      (figures.metric_colour("acc_forget"), 0.9)}


def test_a_metric_keeps_its_colour_and_colours_are_okabe_ito():
    colours = [figures.metric_colour(m) for m in DIGITS_METRICS]
    assert len(set(colours)) == len(colours) and set(colours) <= set(figures.OKABE_ITO)
    tofu = ["forget_quality", "model_utility", "rouge_forget", "rouge_retain", "loss_retain", "loss_forget"]
    assert len({figures.metric_colour(m) for m in tofu}) == len(tofu)
    assert figures.metric_colour("loss_retain") == colours[DIGITS_METRICS.index("loss_retain")]


def test_forget_quality_on_a_log_axis_with_the_005_line():
    t = np.linspace(0, 1, 5)
    results = pd.DataFrame({"task": "tofu", "setting": "Rand", "method_1": "gd", "method_2": "gd", "ratio": 1.0,
                            "seed": 0, "seed_1": 0, "seed_2": 1, "optimizer_1": "fo", "optimizer_2": "fo",
                            "curriculum_1": "none", "curriculum_2": "none", "curve": "linear", "t": t,
                            "status": "ok", "forget_quality": 10.0 ** (-4 * t), "model_utility": 0.5,
                            "loss_retain": 6.0 + t})
    verdicts = pd.DataFrame({"ratio": [1.0], "method_1": ["gd"], "method_2": ["gd"], "curve": ["linear"],
                             "verdict": ["MCU"]})
    references = pd.DataFrame({"task": ["tofu"], "ratio": [1.0], "model": ["retrained"], "forget_quality": [1.0],
                               "model_utility": [0.6], "loss_retain": [3.0]})
    fig = figures.setting_figure_of("tofu", "Rand", results, verdicts, references,
                                    ["forget_quality", "model_utility", "loss_retain"])
    assert len(fig.axes) == 3  # score, loss, Forget Quality
    quality = [ax for ax in fig.axes if "Forget Quality" in ax.get_ylabel()]
    assert quality[0].get_ylabel() == "Forget Quality ↑ (p)"
    assert len(quality) == 1 and quality[0].get_yscale() == "log"
    levels = {line.get_ydata()[0] for line in quality[0].get_lines() if len(set(line.get_ydata())) == 1}
    assert {0.05, 1.0} <= levels  # the significance line and the retrained model's value
    assert fig.axes[-1].get_xlabel() == "t = 0: GD seed 0 → t = 1: GD seed 1"
    loss = [ax for ax in fig.axes if ax.get_yscale() == "symlog"][0]
    low, high = loss.get_ylim()
    assert 0 < low < 3.0 and high > 7.0  # every loss is large: from below the retrained model's 3 nats, not 0
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "Forget Quality ↑" in labels and "Model Utility ↑" in labels


def test_figure_3_has_a_method_matrix_per_ratio_and_curve(drawn):
    _, verdicts, _ = drawn
    met = verdicts[verdicts["setting"] == "Met"]
    fig = figures.mcu_matrix_figure_of("digits", "Met", met)
    matrices = [ax for ax in fig.axes if ax.images]
    assert len(matrices) == len(RATIOS) * 2  # linear and Bezier per ratio
    methods = ["GA", "RL"]
    for ax in matrices:
        assert ax.images[0].get_array().shape == (len(methods), len(methods))
        assert [label.get_text() for label in ax.get_yticklabels()] == methods
    titles = [ax.get_title() for ax in matrices]
    assert [title.split(",")[0] for title in titles] == ["forget 2 %", "forget 2 %", "forget 10 %", "forget 10 %"]
    assert "symmetric" in titles[0] and "trained it" in titles[1]
    linear_10, bezier_10 = (np.ma.filled(ax.images[0].get_array(), np.nan) for ax in matrices[2:])
    # 10 %: RL→GA failed; its linear value is GA→RL's mirrored, its Bezier one stays empty
    assert np.isfinite(linear_10[1, 0]) and linear_10[1, 0] == linear_10[0, 1]
    assert np.isnan(bezier_10[1, 0]) and bezier_10[0, 1] == pytest.approx(3.0, abs=0.1)
    marks = [sum(text.get_text().startswith("✓") for text in ax.texts) for ax in matrices]
    assert marks == [2, 0, 2, 0]  # MCU holds on the linear curves (on the chord), not on the Bezier ones


def test_barrier_heat_map_marks_what_is_within_tolerance(drawn):
    _, verdicts, _ = drawn
    fig = figures.barrier_figure_of("digits", verdicts)
    retain, cliff = [ax for ax in fig.axes if ax.images]
    ok = verdicts[verdicts["status"] == "ok"]
    for ax, column in ((retain, "retain_barrier"), (cliff, "forget_barrier")):
        within = int((ok[column] <= ok["tolerance"]).sum())
        assert sum(text.get_text().startswith("✓") for text in ax.texts) == within
        (frames,) = ax.collections
        assert len(frames.get_paths()) == within  # a frame around each
    assert sum(text.get_text() == "×" for text in retain.texts) == 2  # the failed cell's two curves


def test_pathway_figure_names_metrics_in_words(report_storage, tmp_path):
    from mcu_ray.report.tables import pathway_curves, pathway_table

    pathway = load_sweep(report_storage, SWEEP).pathway
    fig = figures.pathway_figure_of("digits", pathway_table(pathway, "digits"), pathway_curves(pathway, "digits"))
    assert len(fig.axes) == len(RATIOS) * (len(PATHWAY_SOURCES) + 1)  # sources + the gap-along-t column
    ticks = [label.get_text() for label in fig.axes[0].get_xticklabels()]
    assert ticks == ["test accuracy ↑", "retain accuracy ↑", "forget accuracy ↓", "ZRF ↑"]
    figures.save(fig, str(tmp_path / "pathway.png"))
    height, width, _ = mpimg.imread(tmp_path / "pathway.png").shape
    assert height > 400 and width > 1000  # two ratio rows, three sources plus the gap-along-t column


def test_figure_3_mirrors_linear_curves_only_when_both_ends_share_a_variant(drawn):
    """Met-CL-Non-CL joins a CL endpoint to a non-CL one: GA(CL)→RL is not RL(CL)→GA reversed."""
    _, verdicts, _ = drawn
    met = verdicts[verdicts["setting"] == "Met"].assign(setting="Met-CL-Non-CL")
    fig = figures.mcu_matrix_figure_of("digits", "Met-CL-Non-CL", met)
    linear_10 = np.ma.filled([ax for ax in fig.axes if ax.images][2].images[0].get_array(), np.nan)
    assert np.isnan(linear_10[1, 0]) and np.isfinite(linear_10[0, 1])  # the failed RL→GA stays empty
    assert "row: the t = 0 endpoint" in [ax for ax in fig.axes if ax.images][2].get_title()


def test_several_seeds_draw_a_mean_and_std_band(drawn):
    """Three seeds of one curve: the line is their mean along t, the band mean ± sample std."""
    results, verdicts, references = drawn
    one = results[(results["setting"] == "Rand") & (results["method_1"] == "ga") & (results["ratio"] == 2.0)
                  & (results["curve"] == "linear")]
    offsets = {0: 0.0, 1: 0.02, 2: 0.07}  # test accuracy of seed s shifted by offsets[s]
    seeds = pd.concat([one.assign(seed=s, acc_test=one["acc_test"] + d) for s, d in offsets.items()])
    fig = figures.setting_figure_of("digits", "Rand", seeds, verdicts.iloc[:0], references, ["acc_test"])
    ax = fig.axes[0]
    mean = one["acc_test"].to_numpy() + np.mean(list(offsets.values()))
    std = np.std(list(offsets.values()), ddof=1)
    assert ax.get_lines()[0].get_ydata() == pytest.approx(mean)
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx((mean - std).min()) and ys.max() == pytest.approx((mean + std).max())
    assert "mean of 3 seeds" in ax.get_title()


def test_a_reused_figure_draws_what_a_new_one_does(drawn, tmp_path):
    """The report draws each figure on the last one of the same shape, cleared: Met (with a failed
    cell's shaded panels) and Rand share a shape; drawn after each other on one figure, each must
    come out pixel for pixel as when drawn on a new figure."""
    results, verdicts, references = drawn

    def draw(setting, path, reuse):
        rows = results["setting"] == setting
        fig = figures.setting_figure_of("digits", setting, results[rows], verdicts[verdicts["setting"] == setting],
                                        references, DIGITS_METRICS, reuse=reuse)
        figures.save(fig, str(path), keep=reuse)
        return fig

    for first, second in (("Met", "Rand"), ("Rand", "Met")):
        reused = draw(first, tmp_path / f"{first}_first.png", reuse=True)
        assert draw(second, tmp_path / f"{second}_reused.png", reuse=True) is reused  # one figure, drawn twice
        draw(second, tmp_path / f"{second}_new.png", reuse=False)
        assert np.array_equal(mpimg.imread(tmp_path / f"{second}_reused.png"),
                              mpimg.imread(tmp_path / f"{second}_new.png")), second
    figures._GRIDS.clear()
