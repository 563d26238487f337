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
    for name in ("digits_Rand.png", "digits_Met.png", "digits_barriers.png"):
        path = f"{folder}/{name}"
        with open(path, "rb") as png:
            blob = png.read()
        assert blob.startswith(PNG_MAGIC) and len(blob) > 10_000, name
        height, width, channels = mpimg.imread(path).shape
        assert height > 200 and width > 300 and channels in (3, 4), name


def test_index_lists_every_figure_and_the_verdicts(report):
    _, text = report
    images = set(re.findall(r'<img src="([^"]+)"', text))
    assert images == {"digits_Rand.png", "digits_Met.png", "digits_barriers.png", "digits_pathway.png"}
    for image in images:
        assert not image.startswith("/")  # relative: the folder can be moved
    assert ">MCU<" in text and ">barrier<" in text
    assert "GA→RL" in text and "RL→GA" in text


def test_failed_cells_appear_as_failed(report):
    _, text = report
    failed_rows = re.findall(r'<tr class="failed">(.*?)</tr>', text)
    assert len(failed_rows) == 2  # the failed cell's linear and Bezier curve
    assert all("RL→GA" in row and ">failed<" in row and ">10<" in row for row in failed_rows)


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
    assert main([f"{storage}/{SWEEP}", "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "index.html")


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
