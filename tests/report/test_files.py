"""Every table of a report as CSV and LaTeX (``report.files``, through ``--csv`` / ``--latex``): the stored
tables as ``mcu_ray.load`` reads them, to the bit, and the page's tables, booktabs, arrows as LaTeX."""
from __future__ import annotations

import numpy as np
import pandas as pd

import mcu_ray
from mcu_ray.report.__main__ import main
from tests.helpers import REPORT_RATIOS as RATIOS
from tests.helpers import REPORT_SETTINGS as SETTINGS
from tests.helpers import REPORT_SWEEP as SWEEP


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


def test_csv_and_latex_hold_every_table_of_the_report(report_storage, tmp_path):
    csv_dir, tex_dir = tmp_path / "csv", tmp_path / "tex"
    assert main([report_storage, SWEEP, "--out", str(tmp_path / "r"), "--tolerance", "0.5", "--csv", str(csv_dir),
                 "--latex", str(tex_dir)]) == 0
    for name in ("results", "barriers", "verdicts", "references", "pathway"):
        frame = mcu_ray.load(report_storage, SWEEP, name, tolerance=0.5)
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
