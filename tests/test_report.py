"""The report from a small synthetic sweep: figures exist and read, index.html lists them all.

The store holds two settings (Rand: same-method pairs, Met: ordered pairs), two
forget ratios, two method pairs each and one failed cell. Linear curves follow the
chord exactly (MCU), Bezier curves bulge above it (a retain barrier of 3 nats). The
barriers table holds deviations only; every verdict is decided when the report is drawn.
No Ray.
"""
from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from mcu_ray.barriers import summarise_metric
from mcu_ray.report import EmptySweepError, build_report
from mcu_ray.report.__main__ import main, split_sweep_dir
from mcu_ray.report.tables import metric_names
from mcu_ray.store import Store
from mcu_ray.tables import read_table, write_table

SWEEP = "synthetic"
SETTINGS = {"Rand": [("ga", "ga"), ("rl", "rl")], "Met": [("ga", "rl"), ("rl", "ga")]}
RATIOS = (2.0, 10.0)
FAILED = ("Met", ("rl", "ga"), 10.0)  # this cell failed: NaN metrics, status 'failed'
T = np.linspace(0, 1, 16)
DIRECTIONS = {"acc_test": +1, "acc_retain": +1, "acc_forget": -1, "zrf": +1, "loss_retain": -1, "loss_forget": +1}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _curve_metrics(curve: str, failed: bool) -> dict:
    """Metrics along t: on the chord for a linear curve, a bump mid-way for a Bezier one."""
    if failed:
        return {m: np.full_like(T, np.nan) for m in ("acc_test", "acc_retain", "acc_forget", "zrf",
                                                      "loss_retain", "loss_forget")}
    bump = 4 * T * (1 - T) if curve == "bezier" else np.zeros_like(T)
    return {"acc_test": 0.9 - 0.3 * bump, "acc_retain": 0.95 - 0.3 * bump, "acc_forget": 0.6 + 0.1 * T,
            "zrf": 0.5 + 0.1 * bump, "loss_retain": 0.2 + 0.1 * T + 3 * bump, "loss_forget": 1.5 - 0.2 * T}


def _identity(setting: str, pair: tuple, ratio: float) -> dict:
    return {"sweep": SWEEP, "spec_hash": "abc123", "code_version": "0.1.0",
            "cell_id": f"cell-{setting}-{pair[0]}-{pair[1]}-{ratio:g}", "task": "digits", "setting": setting,
            "method_1": pair[0], "method_2": pair[1], "optimizer_1": "fo", "optimizer_2": "fo",
            "curriculum_1": "none", "curriculum_2": "none", "ratio": ratio, "seed": 0}


def _write_cell(store: Store, setting: str, pair: tuple, ratio: float) -> None:
    failed = (setting, pair, ratio) == FAILED
    status = "failed" if failed else "ok"
    ident = _identity(setting, pair, ratio)
    results, barriers = [], []
    for curve in ("linear", "bezier"):
        metrics = _curve_metrics(curve, failed)
        for i, t in enumerate(T):
            results.append({**ident, "curve": curve, "curve_key": f"curve-{curve}", "t": float(t),
                            **{m: float(v[i]) for m, v in metrics.items()}, "status": status})
        for metric, values in metrics.items():
            summary = {} if failed else summarise_metric(metric, T, values, DIRECTIONS[metric]).__dict__
            barriers.append({**ident, "curve": curve, "curve_key": f"curve-{curve}", "metric": metric,
                             "deviation": summary.get("deviation", np.nan), "min": summary.get("minimum", np.nan),
                             "start": summary.get("start", np.nan), "end": summary.get("end", np.nan),
                             "status": status})
    write_table(store, SWEEP, "results", results, key=ident["cell_id"])
    write_table(store, SWEEP, "barriers", barriers, key=ident["cell_id"])


def _write_references(store: Store) -> None:
    rows = [{"sweep": SWEEP, "task": "digits", "ratio": ratio, "model": model, "key": f"{model}-{ratio:g}",
             "acc_test": 0.95, "acc_retain": 1.0, "acc_forget": 0.9 if model == "retrained" else 1.0, "zrf": 0.47,
             "loss_retain": 0.001, "loss_forget": 0.3 if model == "retrained" else 0.001}
            for ratio in RATIOS for model in ("original", "retrained")]
    write_table(store, SWEEP, "references", rows, key="refs")


PATHWAY_GAPS = {"original": 0.05, "source": 0.1, "pathway": 0.02, "retrained": 0.0}
PATHWAY_SOURCES = {("ga", "fo"): 1.0, ("rl", "fo"): 2.0, ("ga", "so"): 3.0}  # source, optimizer -> gap factor


def _write_pathway(store: Store) -> None:
    """Pathway endpoints from GA, RL and GA with Sophia at both ratios and two seeds, beside the
    original, their source and the retrained model; every gap scaled per (ratio, source)."""
    for ratio in RATIOS:
        for (source, optimizer), factor in PATHWAY_SOURCES.items():
            for seed in (0, 1):
                key = f"ep-pathway_{source}-{optimizer}-{ratio:g}-{seed}"
                ident = {"sweep": SWEEP, "task": "digits", "ratio": ratio, "seed": seed, "method": f"pathway_{source}",
                         "source_method": source, "optimizer": optimizer, "curriculum": "none", "endpoint": key,
                         "t_star": 0.25 + 0.5 * seed}
                rows = [{**ident, "model": model, "t": float("nan"), "gap_to_retrained": gap * factor * ratio,
                         "acc_test": 0.9 - gap,
                         "acc_retain": 1.0 - gap, "acc_forget": 0.9 + gap, "zrf": 0.5, "loss_retain": gap,
                         "loss_forget": 0.3} for model, gap in PATHWAY_GAPS.items()]
                rows += [{**ident, "model": "curve", "t": t, "gap_to_retrained": abs(t - ident["t_star"]),
                          "acc_test": 0.9, "acc_retain": 1.0, "acc_forget": 0.9, "zrf": 0.5, "loss_retain": 0.0,
                          "loss_forget": 0.3} for t in (0.0, 0.5, 1.0)]
                write_table(store, SWEEP, "pathway", rows, key=key)


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    """A store root holding the synthetic sweep."""
    root = str(tmp_path_factory.mktemp("store"))
    store = Store(root)
    for setting, pairs in SETTINGS.items():
        for pair in pairs:
            for ratio in RATIOS:
                _write_cell(store, setting, pair, ratio)
    _write_references(store)
    _write_pathway(store)
    return root


@pytest.fixture(scope="module")
def report(storage, tmp_path_factory):
    """(index.html path, its text) of the report of the synthetic sweep."""
    index = build_report(storage, SWEEP, str(tmp_path_factory.mktemp("report")))
    with open(index, encoding="utf-8") as page:
        return index, page.read()


def test_one_png_per_setting_and_a_barrier_summary(report):
    index, _ = report
    folder = index.rsplit("/", 1)[0]
    for name in ("digits_Rand.png", "digits_Met.png", "digits_Met_matrix.png", "digits_barriers.png"):
        path = f"{folder}/{name}"
        with open(path.replace(".png", ".pdf"), "rb") as pdf:
            assert pdf.read(5) == b"%PDF-", name
        with open(path, "rb") as png:
            blob = png.read()
        assert blob.startswith(PNG_MAGIC) and len(blob) > 10_000, name
        height, width, channels = mpimg.imread(path).shape
        assert height > 200 and width > 300 and channels in (3, 4), name


def test_index_lists_every_figure_and_the_verdicts(report):
    _, text = report
    images = set(re.findall(r'<img src="([^"]+)"', text))
    assert images == {"digits_Rand.png", "digits_Met.png", "digits_Met_matrix.png", "digits_barriers.png",
                      "digits_pathway.png"}  # the method x method matrix for the Met setting only
    for image in images:
        assert not image.startswith("/")  # relative: the folder can be moved
        assert f'<a href="{image[:-4]}.pdf">PDF</a>' in text
    assert ">MCU<" in text and ">barrier<" in text
    assert "GA→RL" in text and "RL→GA" in text


def test_failed_cells_appear_as_failed(report):
    _, text = report
    problems, task = text.split('<section id="digits">')
    failed_rows = re.findall(r'<tr class="failed">(.*?)</tr>', task)
    assert len(failed_rows) == 2  # the failed cell's linear and Bezier curve
    assert all("RL→GA" in row and ">failed<" in row and ">10<" in row for row in failed_rows)
    listed = re.findall(r'<tr class="failed">(.*?)</tr>', problems.split('<section id="problems">')[1])
    assert listed == ["<td>digits</td><td>Met</td><td>RL→GA</td><td>10</td><td>0</td><td>cell-Met-rl-ga-10</td>"
                      "<td>failed</td><td></td>"]  # once, in the list of failed or missing cells


def test_pathway_table_compares_source_pathway_and_retrained_per_ratio(report, storage):
    from mcu_ray.report.tables import load_sweep, pathway_table

    table = pathway_table(load_sweep(storage, SWEEP).pathway, "digits")
    # ratios x sources (GA with Sophia apart from GA) x (original, source, pathway, retrained)
    assert len(table) == len(RATIOS) * len(PATHWAY_SOURCES) * 4
    assert list(table["model"][:4]) == ["original", "source", "pathway", "retrained"]
    assert set(table["seeds"]) == {2}
    labels = {("ga", "fo"): "ga", ("rl", "fo"): "rl", ("ga", "so"): "ga+SO"}
    for ratio in RATIOS:
        for source, factor in PATHWAY_SOURCES.items():
            rows = table[(table["ratio (%)"] == ratio) & (table["source"] == labels[source])]
            assert dict(zip(rows["model"], rows["gap to retrained"])) == pytest.approx(
                {m: gap * factor * ratio for m, gap in PATHWAY_GAPS.items()})
    assert table.loc[table["model"] == "pathway", "t*"].tolist() == pytest.approx([0.5] * 6)  # mean of 0.25, 0.75
    assert table.loc[table["model"] != "pathway", "t*"].isna().all()
    _, text = report
    assert "<h3>Pathway unlearning</h3>" in text and "<th>gap to retrained</th>" in text
    height, width, _ = mpimg.imread(f"{report[0].rsplit('/', 1)[0]}/digits_pathway.png").shape
    assert height > 400 and width > 1000  # two ratio rows, three sources plus the gap-along-t column


def test_report_shows_only_the_current_plans_rows(storage, tmp_path):
    """After an edited sweep file, spec.json names the current cells: older rows stay stored, unshown."""
    import json
    import shutil

    from mcu_ray.report.tables import load_sweep

    root = tmp_path / "copy"
    shutil.copytree(storage, root)
    everything = load_sweep(str(root), SWEEP)
    kept = sorted(everything.results["cell_id"].unique())[:2]
    plan = {"cells": kept, "models": ["retrained-2"], "pathway": ["ep-pathway_ga-fo-2-0"]}
    Store(str(root)).write_bytes(json.dumps({"plan": plan}).encode(), SWEEP, "spec.json")
    current = load_sweep(str(root), SWEEP)
    assert sorted(current.results["cell_id"].unique()) == kept
    assert set(current.barriers["cell_id"]) <= set(kept)
    assert list(current.references["key"]) == ["retrained-2"]
    assert set(current.pathway["endpoint"]) == {"ep-pathway_ga-fo-2-0"}
    assert read_table(Store(str(root)), SWEEP, "results").num_rows == len(everything.results)  # nothing deleted
    Store(str(root)).write_bytes(json.dumps({"plan": {**plan, "cells": ["cell-none"]}}).encode(), SWEEP, "spec.json")
    with pytest.raises(EmptySweepError, match="current sweep file"):
        load_sweep(str(root), SWEEP)


def test_a_searched_sweep_gets_its_search_section_after_the_tasks(storage, tmp_path):
    """summary.json beside the results: the page keeps every task section and adds the search after them. Its
    study database is not there (the store was copied without it), which the section says, still showing
    the chosen point from the summary; nothing is drawn for it and no database is created."""
    import json
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(storage, root)
    summary = {"sweep": SWEEP, "db": f"sqlite:///{tmp_path / 'gone.db'}", "studies": [
        {"task": "digits", "method": "ga", "study": "s.digits.ga", "space": {"lr": {"loguniform": [1e-4, 0.1]}},
         "objectives": [["gap_to_retrained", "min"]], "trials": 4, "ratios": [2.0], "default": {"lr": 0.01},
         "default_trial": 0, "chosen": {"lr": 0.002}, "chosen_trial": 3, "chosen_values": [0.02],
         "default_values": [0.05], "chosen_endpoints": {}, "rule": "best objective"}]}
    Store(str(root)).write_bytes(json.dumps(summary).encode(), SWEEP, "search", "summary.json")
    csv_dir = tmp_path / "csv"
    text = open(build_report(str(root), SWEEP, str(tmp_path / "out"), workers=1, csv_dir=str(csv_dir)),
                encoding="utf-8").read()
    assert text.index('<section id="digits">') < text.index('<section id="search">')
    assert '<a href="#problems">' in text and '<a href="#search">' in text
    assert f"study database {tmp_path / 'gone.db'} not found" in text and not (tmp_path / "gone.db").exists()
    assert not [src for src in re.findall(r'<img src="([^"]+)"', text) if src.startswith("search_")]
    chosen = pd.read_csv(csv_dir / "search_digits_ga_chosen.csv").set_index("name")
    assert chosen.loc["lr", "default"] == 0.01 and chosen.loc["lr", "chosen"] == 0.002
    assert chosen.loc["gap_to_retrained", "chosen"] == 0.02


def test_reference_metrics_on_the_page(report):
    _, text = report
    assert ">original<" in text and ">retrained<" in text
    assert "<th>acc_forget</th>" in text


def test_empty_store_raises_naming_storage_and_sweep(tmp_path):
    with pytest.raises(ValueError, match=f"'nothing'.*{re.escape(str(tmp_path))}"):
        build_report(str(tmp_path), "nothing", str(tmp_path / "out"))
    with pytest.raises(EmptySweepError):
        build_report(str(tmp_path), "nothing", str(tmp_path / "out"))


def test_cli_prints_the_index_path(storage, tmp_path, capsys):
    assert main([f"{storage}/{SWEEP}", "--out", str(tmp_path / "out"), "--workers", "1"]) == 0  # drawn in-process
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "index.html")
    text = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert all((tmp_path / "out" / png).is_file() for png in re.findall(r'<img src="([^"]+)"', text))


def test_cli_refuses_no_workers(storage, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([storage, SWEEP, "--workers", "0", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "--workers" in capsys.readouterr().err


def test_cli_tolerance_redecides_the_verdicts(storage, tmp_path):
    """The Bezier curves' retain barrier is 3 nats: a barrier at the sweep's 0.01, MCU at 5; the
    per-metric table follows each family's tolerance (accuracies dip by 0.3 on the Bezier curves)."""
    assert main([storage, SWEEP, "--out", str(tmp_path / "default")]) == 0
    default = (tmp_path / "default" / "index.html").read_text(encoding="utf-8")
    assert "<td>barrier</td>" in default and "loss 0.01 (the MCU verdict)" in default
    assert "<h3>Barriers per metric</h3>" in default and "<td>4/4</td>" in default  # acc_test: 4 Bezier curves
    assert main([storage, SWEEP, "--tolerance", "5", "--tolerance", "accuracy=0.5", "--out", str(tmp_path / "loose")]) == 0
    loose = (tmp_path / "loose" / "index.html").read_text(encoding="utf-8")
    assert "<td>barrier</td>" not in loose and "loss 5 (the MCU verdict), accuracy 0.5" in loose
    assert "<td>4/4</td>" not in loose


@pytest.mark.parametrize("value", ["speed=1", "accuracy=fast", "-1", "forget_quality=2"])
def test_cli_refuses_a_bad_tolerance(storage, tmp_path, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([storage, SWEEP, "--tolerance", value, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "--tolerance" in capsys.readouterr().err


def test_cli_exits_2_on_an_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "no results" in capsys.readouterr().err


def test_cli_splits_the_sweep_folder():
    assert split_sweep_dir("runs/quickstart/") == ("runs", "quickstart")
    assert split_sweep_dir("s3://bucket/runs/full") == ("s3://bucket/runs", "full")
    assert split_sweep_dir("quickstart") == (".", "quickstart")


def test_metrics_of_an_unregistered_task_are_its_numeric_columns():
    frame = pd.DataFrame({"task": ["tofu"] * 2, "ratio": [1.0, 1.0], "seed": [0, 0], "t": [0.0, 1.0],
                          "status": ["ok", "ok"], "rouge_forget": [0.5, 0.4], "mcu": [True, False],
                          "other_task_metric": [np.nan, np.nan]})
    assert metric_names(frame, "tofu") == ["rouge_forget"]



# ---------------------------------------------------------------------- figure content
from matplotlib.colors import to_hex  # noqa: E402

from mcu_ray.report import figures  # noqa: E402
from mcu_ray.report.tables import curve_verdicts, load_sweep  # noqa: E402

DIGITS_METRICS = ["acc_test", "acc_retain", "acc_forget", "zrf", "loss_retain", "loss_forget"]
DIGITS_FAMILIES = 3  # accuracy, score (ZRF), loss


@pytest.fixture(scope="module")
def drawn(storage):
    """(results, verdicts, references) of the synthetic sweep, as the report draws them."""
    tables = load_sweep(storage, SWEEP)
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


def test_pathway_figure_names_metrics_in_words(storage, report):
    from mcu_ray.report.tables import pathway_curves, pathway_table

    pathway = load_sweep(storage, SWEEP).pathway
    fig = figures.pathway_figure_of("digits", pathway_table(pathway, "digits"), pathway_curves(pathway, "digits"))
    assert len(fig.axes) == len(RATIOS) * (len(PATHWAY_SOURCES) + 1)  # sources + the gap-along-t column
    ticks = [label.get_text() for label in fig.axes[0].get_xticklabels()]
    assert ticks == ["test accuracy ↑", "retain accuracy ↑", "forget accuracy ↓", "ZRF ↑"]
    with open(f"{report[0].rsplit('/', 1)[0]}/digits_pathway.pdf", "rb") as pdf:
        assert pdf.read(5) == b"%PDF-"


def test_figure_3_mirrors_linear_curves_only_when_both_ends_share_a_variant(drawn):
    """Met-CL-Non-CL joins a CL endpoint to a non-CL one: GA(CL)→RL is not RL(CL)→GA reversed."""
    _, verdicts, _ = drawn
    met = verdicts[verdicts["setting"] == "Met"].assign(setting="Met-CL-Non-CL")
    fig = figures.mcu_matrix_figure_of("digits", "Met-CL-Non-CL", met)
    linear_10 = np.ma.filled([ax for ax in fig.axes if ax.images][2].images[0].get_array(), np.nan)
    assert np.isnan(linear_10[1, 0]) and np.isfinite(linear_10[0, 1])  # the failed RL→GA stays empty
    assert "row: the t = 0 endpoint" in [ax for ax in fig.axes if ax.images][2].get_title()


# ----------------------------------------------------------------------------- --csv and --latex


def _same_as_csv(path, frame: pd.DataFrame) -> None:
    """The CSV file holds ``frame``: the same columns, rows and values (floats to the bit; an empty
    field is a null, or empty text, which CSV cannot tell apart)."""
    written = pd.read_csv(path)
    assert list(written.columns) == list(frame.columns) and len(written) == len(frame), path
    for column in frame.columns:
        want, got = frame[column].reset_index(drop=True), written[column]
        if pd.api.types.is_bool_dtype(want):
            got = got.map(lambda v: {"True": True, "False": False}.get(v, v))
        elif not pd.api.types.is_numeric_dtype(want):
            want, got = want.astype(object).where(want.notna(), ""), got.astype(object).where(got.notna(), "")
            got = got.astype(str)
        assert (want.isna().to_numpy() == got.isna().to_numpy()).all(), column
        kept = want.notna().to_numpy()
        if pd.api.types.is_numeric_dtype(want) and not pd.api.types.is_bool_dtype(want):
            assert np.array_equal(want[kept].to_numpy(float), got[kept].to_numpy(float)), column
        else:
            assert list(want[kept]) == list(got[kept]), column


def test_csv_and_latex_hold_every_table_of_the_report(storage, tmp_path):
    import mcu_ray

    csv_dir, tex_dir = tmp_path / "csv", tmp_path / "tex"
    assert main([storage, SWEEP, "--out", str(tmp_path / "r"), "--tolerance", "0.5", "--csv", str(csv_dir),
                 "--latex", str(tex_dir)]) == 0
    for name in ("results", "barriers", "verdicts", "references", "pathway"):
        frame = mcu_ray.load(storage, SWEEP, name, tolerance=0.5)
        assert len(frame) > 0
        _same_as_csv(csv_dir / f"{name}.csv", frame)
    verdicts = pd.read_csv(csv_dir / "verdicts.csv")
    assert len(verdicts) == len(SETTINGS) * 2 * len(RATIOS) * 2  # cells x curves
    page = {p.stem for p in csv_dir.glob("digits_*.csv")}
    assert page == {f"digits_{t}" for t in ("mcu_counts", "barriers", "metric_barriers", "references", "endpoints",
                                            "pathway")}
    assert {p.stem for p in tex_dir.glob("*.tex")} == {p.stem for p in csv_dir.glob("*.csv")}
    shown = pd.read_csv(csv_dir / "digits_barriers.csv")
    assert len(shown) == len(verdicts) and set(shown["methods"]) == {"GA", "RL", "GA→RL", "RL→GA"}
    tex = (tex_dir / "digits_barriers.tex").read_text()
    assert tex.startswith("\\begin{tabular}") and "\\toprule" in tex and "\\bottomrule" in tex
    assert "ratio (\\%)" in tex and "GA$\\rightarrow$RL" in tex and "→" not in tex
    assert tex.count("\\\\\n") == len(shown) + 1  # a header line and one line per row
    results_tex = (tex_dir / "results.tex").read_text()
    assert results_tex.startswith("\\begin{longtable}") and "acc\\_test" in results_tex


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


def test_problem_cells_list_failed_and_missing_cells(storage, tmp_path):
    """spec.json plans two more cells than stored: one whose endpoint recorded a divergence, one never run."""
    import json
    import shutil

    from mcu_ray.report.tables import load_sweep, problem_cells

    root = tmp_path / "copy"
    shutil.copytree(storage, root)
    store = Store(str(root))
    stored = load_sweep(str(root), SWEEP).results.drop_duplicates("cell_id")
    planned = [{"key": r.cell_id, "task": "digits", "setting": r.setting, "method_1": r.method_1,
                "method_2": r.method_2, "ratio": r.ratio, "seed": 0, "artifacts": []} for r in stored.itertuples()]
    planned += [{"key": "cell-diverged", "task": "digits", "setting": "Met", "method_1": "ga", "method_2": "rl",
                 "ratio": 2.0, "seed": 1, "artifacts": ["orig-1", "ep-ga-1", "ep-rl-1"]},
                {"key": "cell-not-run", "task": "digits", "setting": "Rand", "method_1": "rl", "method_2": "rl",
                 "ratio": 10.0, "seed": 1, "artifacts": ["orig-1", "ep-rl-2"]}]
    store.save_artifact("orig-1", {"kind": "original"})
    store.save_artifact("ep-rl-1", {"kind": "endpoint", "status": "diverged", "reason": "loss is NaN at step 3"})
    plan = {"cells": [c["key"] for c in planned], "models": ["original-2", "retrained-2", "original-10",
                                                               "retrained-10"], "pathway": [], "cell_list": planned}
    store.write_bytes(json.dumps({"plan": plan}).encode(), SWEEP, "spec.json")
    problems = problem_cells(load_sweep(str(root), SWEEP), str(root))
    assert list(zip(problems["cell"], problems["status"], problems["seed"])) == [
        ("cell-not-run", "missing", 1), ("cell-diverged", "missing", 1), ("cell-Met-rl-ga-10", "failed", 0)]
    reasons = dict(zip(problems["cell"], problems["reason"]))
    assert reasons["cell-diverged"] == "ep-rl-1 diverged: loss is NaN at step 3"
    assert reasons["cell-not-run"].startswith("no rows: not run yet")
    assert list(problems["methods"]) == ["RL", "GA→RL", "RL→GA"]  # in Table 1's setting order, then by pair


def test_spec_json_plan_names_each_cells_fields_and_artifacts():
    """What the report's list of missing cells reads: every planned cell, its methods, and the
    artifacts whose recorded failure explains why it has no rows."""
    import json
    from pathlib import Path

    from mcu_ray.plan import make_plan
    from mcu_ray.spec import load_spec
    from mcu_ray.sweep import plan_record

    plan = make_plan(load_spec(Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"))
    record = json.loads(json.dumps(plan_record(plan)))  # as spec.json holds it
    assert [c["key"] for c in record["cell_list"]] == record["cells"] == [c.key for c in plan.cells]
    for cell, listed in zip(plan.cells, record["cell_list"]):
        e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
        assert (listed["method_1"], listed["method_2"], listed["setting"], listed["ratio"], listed["seed"]) == (
            e1.method, e2.method, cell.setting, cell.ratio, cell.seed)
        curves = dict(cell.curves)
        assert listed["artifacts"] == [e1.original, cell.retrained, e1.key, e2.key,
                                       curves["bezier"].replace("curve-", "bend-"), curves["linear"], curves["bezier"]]


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
