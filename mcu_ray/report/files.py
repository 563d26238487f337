"""Every table of a report as CSV (to re-analyse) and LaTeX (to paste into a paper).

Two kinds of tables, one file each (``<name>.csv`` / ``<name>.tex``):
- the sweep's tables whole, as ``mcu_ray.load`` returns them with the report's tolerances:
  ``results``, ``barriers`` (with each row's family, tolerance and barrier flag), ``verdicts``,
  ``references``, ``pathway``; rows of cells an edited sweep file dropped included, as ``load`` has them;
- the tables the page shows for each task, as shown there: ``<task>_mcu_counts``,
  ``<task>_barriers``, ``<task>_metric_barriers``, ``<task>_references``, ``<task>_endpoints``,
  ``<task>_pathway`` (a table the page leaves out, being empty, is not written), and per searched
  task and method ``search_<task>_<method>_chosen``, ``_importance``, ``_validation`` and ``_trials``
  (every complete or pruned trial: its objectives and parameters).
CSV: every value at full precision, an empty field for a null (or empty text). LaTeX: booktabs rules
(``\\usepackage{booktabs}``), a ``longtable`` past LONG rows (``\\usepackage{longtable}``),
numbers to 4 significant digits, ``--`` for a null, arrows as math symbols.
Every file the report writes, tables here and figures, is named through ``safe_file_name``.
"""
from __future__ import annotations

import dataclasses
import os
import re

import pandas as pd

from mcu_ray.tables import load

STORED = ("results", "barriers", "verdicts", "references", "pathway")
LONG = 50  # rows above which a LaTeX table is a longtable: a tabular cannot break across pages
SYMBOLS = {"→": r"$\rightarrow$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "—": "---", "✓": r"$\checkmark$"}


def safe_file_name(name: str) -> str:
    """Letters, digits, '.', '_' and '-' only: ``digits_Met-CL.png``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def report_tables(storage: str, sweep: str, tolerance, sections) -> dict[str, pd.DataFrame]:
    """name -> table: the stored tables (``mcu_ray.load``) and the page tables of each section
    (``page.TaskSection`` or ``page.SearchSection``)."""
    tables = {name: load(storage, sweep, name, tolerance) for name in STORED}
    for section in sections:
        for field in dataclasses.fields(section):
            frame = getattr(section, field.name)
            if isinstance(frame, pd.DataFrame) and not frame.empty:
                tables[safe_file_name(f"{section.name}_{field.name}")] = frame
    return tables


def latex(frame: pd.DataFrame) -> str:
    """A booktabs table of ``frame`` (a longtable past LONG rows), special characters escaped."""
    text = frame.to_latex(index=False, float_format="%.4g", na_rep="--", escape=True, longtable=len(frame) > LONG)
    for symbol, command in SYMBOLS.items():
        text = text.replace(symbol, command)
    return text


def write_tables(tables: dict[str, pd.DataFrame], csv_dir: str | None = None,
                 latex_dir: str | None = None) -> list[str]:
    """``<name>.csv`` under ``csv_dir`` and ``<name>.tex`` under ``latex_dir`` (either may be None); the paths."""
    written = []
    for folder, suffix in ((csv_dir, "csv"), (latex_dir, "tex")):
        if folder is None:
            continue
        os.makedirs(folder, exist_ok=True)
        for name, frame in tables.items():
            path = os.path.join(folder, f"{name}.{suffix}")
            if suffix == "csv":
                frame.to_csv(path, index=False)
            else:
                with open(path, "w", encoding="utf-8") as out:
                    out.write(latex(frame))
            written.append(path)
    return written
