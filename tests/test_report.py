"""The report from a small synthetic sweep: figures exist and read, index.html lists them all.

The store holds two settings (Rand: same-method pairs, Met: ordered pairs), two
forget ratios, two method pairs each and one failed cell. Linear curves follow the
chord exactly (MCU), Bezier curves bulge above it (a retain barrier). No Ray.
"""
from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mcu_ray.report import EmptySweepError, build_report
from mcu_ray.report.__main__ import main, split_sweep_dir
from mcu_ray.report.tables import metric_names
from mcu_ray.store import Store

SWEEP = "synthetic"
SETTINGS = {"Rand": [("ga", "ga"), ("rl", "rl")], "Met": [("ga", "rl"), ("rl", "ga")]}
RATIOS = (2.0, 10.0)
FAILED = ("Met", ("rl", "ga"), 10.0)  # this cell failed: NaN metrics, status 'failed'
TOLERANCE = 0.01
T = np.linspace(0, 1, 16)
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
        retain_barrier = np.nan if failed else float(np.max(3 * 4 * T * (1 - T))) if curve == "bezier" else 0.0
        forget_barrier = np.nan if failed else 0.0
        mcu = not failed and retain_barrier <= TOLERANCE
        for i, t in enumerate(T):
            results.append({**ident, "curve": curve, "curve_key": f"curve-{curve}", "t": float(t),
                            **{m: float(v[i]) for m, v in metrics.items()}, "status": status})
        for metric in metrics:
            barriers.append({**ident, "curve": curve, "curve_key": f"curve-{curve}", "metric": metric,
                             "retain_barrier": retain_barrier, "forget_barrier": forget_barrier,
                             "mcu": mcu, "tolerance": TOLERANCE, "status": status})
    partition = {"task": "digits", "setting": setting}
    store.write_table(pa.Table.from_pylist(results), SWEEP, "results", partition, key=ident["cell_id"])
    store.write_table(pa.Table.from_pylist(barriers), SWEEP, "barriers", partition, key=ident["cell_id"])


def _write_references(store: Store) -> None:
    rows = [{"sweep": SWEEP, "task": "digits", "ratio": ratio, "model": model, "key": f"{model}-{ratio:g}",
             "acc_test": 0.95, "acc_retain": 1.0, "acc_forget": 0.9 if model == "retrained" else 1.0, "zrf": 0.47,
             "loss_retain": 0.001, "loss_forget": 0.3 if model == "retrained" else 0.001}
            for ratio in RATIOS for model in ("original", "retrained")]
    store.write_table(pa.Table.from_pylist(rows), SWEEP, "references", {"task": "digits"}, key="refs")


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
    assert images == {"digits_Rand.png", "digits_Met.png", "digits_barriers.png"}
    for image in images:
        assert not image.startswith("/")  # relative: the folder can be moved
    assert ">MCU<" in text and ">barrier<" in text
    assert "GA→RL" in text and "RL→GA" in text


def test_failed_cells_appear_as_failed(report):
    _, text = report
    failed_rows = re.findall(r'<tr class="failed">(.*?)</tr>', text)
    assert len(failed_rows) == 2  # the failed cell's linear and Bezier curve
    assert all("RL→GA" in row and ">failed<" in row and ">10<" in row for row in failed_rows)


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
