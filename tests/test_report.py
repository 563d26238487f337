"""The report package (``mcu_ray.report``: ``build_report`` and ``python -m mcu_ray.report``) on the
synthetic sweep of ``helpers.write_report_sweep``: each figure file is the figure of its setting's rows,
index.html lists them all, failed cells, pathway and references tables, and the command line. No Ray.
(What each figure shows: tests/report/test_figures.py; the tables: tests/report/test_tables.py.)
"""
from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from mcu_ray.report import EmptySweepError, build_report, figures
from mcu_ray.report.__main__ import main, split_sweep_dir
from mcu_ray.report.tables import curve_verdicts, load_sweep, metric_names
from mcu_ray.store import Store
from mcu_ray.tables import read_table
from tests.helpers import PATHWAY_GAPS, PATHWAY_SOURCES
from tests.helpers import REPORT_RATIOS as RATIOS
from tests.helpers import REPORT_SWEEP as SWEEP

@pytest.fixture(scope="module")
def report(report_storage, tmp_path_factory):
    """(index.html path, its text) of the report of the synthetic sweep."""
    index = build_report(report_storage, SWEEP, str(tmp_path_factory.mktemp("report")))
    with open(index, encoding="utf-8") as page:
        return index, page.read()


def test_each_figure_file_is_its_settings_figure(report, report_storage, tmp_path):
    """The report's PNGs are the figures of their own rows (drawn again here, alone, on new figures):
    pixel for pixel, not another setting's, a stale or a blank one; each has its PDF beside it."""
    folder = report[0].rsplit("/", 1)[0]
    tables = load_sweep(report_storage, SWEEP)
    verdicts = curve_verdicts(tables.results, tables.barriers, tables.tolerances)
    metrics = metric_names(tables.results, "digits")

    def of_setting(frame, setting):
        return frame[frame["setting"] == setting]

    expected = {
        "digits_Rand.png": figures.setting_figure_of("digits", "Rand", of_setting(tables.results, "Rand"),
                                                     of_setting(verdicts, "Rand"), tables.references, metrics),
        "digits_Met.png": figures.setting_figure_of("digits", "Met", of_setting(tables.results, "Met"),
                                                    of_setting(verdicts, "Met"), tables.references, metrics),
        "digits_Met_matrix.png": figures.mcu_matrix_figure_of("digits", "Met", of_setting(verdicts, "Met")),
        "digits_barriers.png": figures.barrier_figure_of("digits", verdicts),
    }
    for name, fig in expected.items():
        figures.save(fig, str(tmp_path / name))
        assert np.array_equal(mpimg.imread(f"{folder}/{name}"), mpimg.imread(tmp_path / name)), name
        with open(f"{folder}/{name[:-4]}.pdf", "rb") as pdf:
            assert pdf.read(5) == b"%PDF-", name
    rand, met = mpimg.imread(f"{folder}/digits_Rand.png"), mpimg.imread(f"{folder}/digits_Met.png")
    assert rand.shape != met.shape or not np.array_equal(rand, met)  # the settings' figures differ


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


def test_pathway_table_compares_source_pathway_and_retrained_per_ratio(report, report_storage):
    from mcu_ray.report.tables import load_sweep, pathway_table

    table = pathway_table(load_sweep(report_storage, SWEEP).pathway, "digits")
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


def test_report_shows_only_the_current_plans_rows(report_storage, tmp_path):
    """After an edited sweep file, spec.json names the current cells: older rows stay stored, unshown."""
    import json
    import shutil

    from mcu_ray.report.tables import load_sweep

    root = tmp_path / "copy"
    shutil.copytree(report_storage, root)
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


def test_a_searched_sweep_gets_its_search_section_after_the_tasks(report_storage, tmp_path):
    """summary.json beside the results: the page keeps every task section and adds the search after them. Its
    study database is not there (the store was copied without it), which the section says, still showing
    the chosen point from the summary; nothing is drawn for it and no database is created."""
    import json
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(report_storage, root)
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


def test_cli_prints_the_index_path(report_storage, tmp_path, capsys):
    assert main([f"{report_storage}/{SWEEP}", "--out", str(tmp_path / "out"), "--workers", "1"]) == 0  # drawn in-process
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "index.html")
    text = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert all((tmp_path / "out" / png).is_file() for png in re.findall(r'<img src="([^"]+)"', text))


def test_cli_refuses_no_workers(report_storage, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([report_storage, SWEEP, "--workers", "0", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "--workers" in capsys.readouterr().err


def test_cli_tolerance_redecides_the_verdicts(report_storage, tmp_path):
    """The Bezier curves' retain barrier is 3 nats: a barrier at the sweep's 0.01, MCU at 5; the
    per-metric table follows each family's tolerance (accuracies dip by 0.3 on the Bezier curves)."""
    assert main([report_storage, SWEEP, "--out", str(tmp_path / "default")]) == 0
    default = (tmp_path / "default" / "index.html").read_text(encoding="utf-8")
    assert "<td>barrier</td>" in default and "loss 0.01 (the MCU verdict)" in default
    assert "<h3>Barriers per metric</h3>" in default and "<td>4/4</td>" in default  # acc_test: 4 Bezier curves
    assert main([report_storage, SWEEP, "--tolerance", "5", "--tolerance", "accuracy=0.5", "--out", str(tmp_path / "loose")]) == 0
    loose = (tmp_path / "loose" / "index.html").read_text(encoding="utf-8")
    assert "<td>barrier</td>" not in loose and "loss 5 (the MCU verdict), accuracy 0.5" in loose
    assert "<td>4/4</td>" not in loose


@pytest.mark.parametrize("value", ["speed=1", "accuracy=fast", "-1", "forget_quality=2"])
def test_cli_refuses_a_bad_tolerance(report_storage, tmp_path, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([report_storage, SWEEP, "--tolerance", value, "--out", str(tmp_path / "out")])
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
