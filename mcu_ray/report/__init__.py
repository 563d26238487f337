"""The report of a sweep: figures and an index page drawn from its result tables.

build_report reads the results, barriers and references tables of one sweep and
writes, under the output folder, one PNG (and PDF) per (task, setting), a method ×
method matrix per Met-type setting (paper Figure 3), one barrier summary per task, and
index.html tying them together with the barrier and reference tables. It reads only
the store; nothing here needs Ray or a GPU.
"""
from __future__ import annotations

import logging
import os
import re

import pandas as pd

from mcu_ray.report.files import report_tables, write_tables
from mcu_ray.report.figures import barrier_figure, is_ordered_setting, mcu_matrix_figure, pathway_figure, setting_figure
from mcu_ray.report.page import TaskSection, index_html
from mcu_ray.report.tables import (
    EmptySweepError, SweepTables, curve_verdicts, endpoint_table, load_sweep, method_pairs, metric_names, ordered_curves,
    ordered_settings, pair_label, pathway_curves, pathway_table, provenance_table,
)

__all__ = ["build_report", "EmptySweepError"]

logger = logging.getLogger(__name__)


def build_report(storage: str, sweep: str, out_dir: str, tolerance=None, csv_dir: str | None = None,
                 latex_dir: str | None = None) -> str:
    """Draw every figure of ``<storage>/<sweep>`` into ``out_dir``; returns the path of index.html.

    Every verdict is decided here from the stored deviations: ``tolerance`` (a number for the
    losses, or a mapping per metric family, over the sweep file's; None: the sweep file's)
    changes them without recomputing anything. ``csv_dir`` / ``latex_dir``: also write every
    table there (``report.files``). Raises EmptySweepError (a ValueError) when the sweep has no results.
    """
    tables = load_sweep(storage, sweep, tolerance)
    verdicts = curve_verdicts(tables.results, tables.barriers, tables.tolerances)
    os.makedirs(out_dir, exist_ok=True)
    sections = [_task_section(task, tables, verdicts[verdicts["task"] == task], out_dir)
                for task in sorted(tables.results["task"].unique())]
    if csv_dir or latex_dir:
        write_tables(report_tables(storage, sweep, tolerance, sections), csv_dir, latex_dir)
    index = os.path.join(out_dir, "index.html")
    with open(index, "w", encoding="utf-8") as page:
        page.write(index_html(sweep, storage, _header(tables.results, tables.tolerances), sections,
                              provenance_table(tables.results)))
    return index


def _task_section(task: str, tables: SweepTables, verdicts: pd.DataFrame, out_dir: str) -> TaskSection:
    """Draw one task's figures and gather its tables."""
    results = tables.results[tables.results["task"] == task]
    metrics = metric_names(results, task)
    figures = []
    for setting in ordered_settings(results["setting"]):
        name = safe_file_name(f"{task}_{setting}.png")
        setting_figure(os.path.join(out_dir, name), task, setting, results[results["setting"] == setting],
                       verdicts[verdicts["setting"] == setting], tables.references, metrics)
        figures.append((f"{task} · {setting}: metrics along the linear (solid) and Bezier (dashed) curves, "
                        f"t = 0 and t = 1 named under each column; a block of panels per forget ratio, one "
                        f"panel per metric family (↑ / ↓: higher / lower is better after unlearning); dotted: "
                        f"the retrained model; Forget Quality on a log axis with the p = 0.05 line", name))
        logger.info("wrote %s", name)
        of_setting = verdicts[verdicts["setting"] == setting]
        if is_ordered_setting(setting, of_setting) and not of_setting.empty:
            name = safe_file_name(f"{task}_{setting}_matrix.png")
            mcu_matrix_figure(os.path.join(out_dir, name), task, setting, of_setting)
            figures.append((f"{task} · {setting} (paper Figure 3): retain barrier between each pair of methods "
                            f"per forget ratio; linear curves symmetric, Bezier rows = the method that trained "
                            f"the curve; green ✓: MCU holds", name))
    name = safe_file_name(f"{task}_barriers.png")
    barrier_figure(os.path.join(out_dir, name), task, verdicts)
    figures.append((f"{task}: retain barrier and forget cliff per setting and method pair (nats, mean over "
                    f"seeds); green ✓: within the loss tolerance; grey ×: failed", name))
    pathway = pathway_table(tables.pathway, task)
    if not pathway.empty:
        name = safe_file_name(f"{task}_pathway.png")
        pathway_figure(os.path.join(out_dir, name), task, pathway, pathway_curves(tables.pathway, task))
        figures.append((f"{task}: pathway unlearning at t* vs its source endpoint and the retrained model", name))
    return TaskSection(task, figures, _mcu_counts(verdicts), _barrier_rows(verdicts),
                       _reference_rows(tables.references, task), endpoint_table(tables.results, task), pathway,
                       _metric_barriers(tables.barriers[tables.barriers["task"] == task], metrics))


def safe_file_name(name: str) -> str:
    """Letters, digits, '.', '_' and '-' only: ``digits_Met-CL.png``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _header(results: pd.DataFrame, tolerances) -> dict:
    return {
        "tolerances": f"loss {tolerances.loss:g} (the MCU verdict), accuracy {tolerances.accuracy:g}, "
                      f"score {tolerances.score:g}, Forget Quality significance level {tolerances.forget_quality:g}",
        "cells": results["cell_id"].nunique(),
        "cells not ok": results.loc[results["status"] != "ok", "cell_id"].nunique(),
        "seeds": ", ".join(str(s) for s in sorted(results["seed"].unique())),
        "spec hash": ", ".join(sorted(results["spec_hash"].dropna().unique())),
        "code version": ", ".join(sorted(results["code_version"].dropna().unique())),
    }


def _sorted_cells(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Rows in figure order: setting (Table 1), method pair, ratio, seed, curve."""
    settings = {s: i for i, s in enumerate(ordered_settings(verdicts["setting"]))}
    pairs = {p: i for i, p in enumerate(method_pairs(verdicts))}
    curves = {c: i for i, c in enumerate(ordered_curves(verdicts["curve"]))}
    rank = pd.DataFrame({
        "setting": verdicts["setting"].map(settings),
        "pair": [pairs[p] for p in zip(verdicts["method_1"], verdicts["method_2"])],
        "ratio": verdicts["ratio"], "seed": verdicts["seed"], "curve": verdicts["curve"].map(curves),
    }, index=verdicts.index)
    return verdicts.loc[rank.sort_values(list(rank.columns)).index]


def _barrier_rows(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The barrier table of one task as shown on the page."""
    rows = _sorted_cells(verdicts)
    return pd.DataFrame({
        "setting": rows["setting"],
        "methods": [pair_label(a, b) for a, b in zip(rows["method_1"], rows["method_2"])],
        "ratio (%)": rows["ratio"], "seed": rows["seed"], "curve": rows["curve"],
        "retain barrier": rows["retain_barrier"], "forget barrier": rows["forget_barrier"],
        "tolerance": rows["tolerance"], "verdict": rows["verdict"], "status": rows["status"],
    })


def _metric_barriers(barriers: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per setting and curve kind: how many curves have a barrier on each metric, out of those evaluated."""
    counts = []
    for setting in ordered_settings(barriers["setting"]):
        of_setting = barriers[barriers["setting"] == setting]
        for curve in ordered_curves(of_setting["curve"]):
            rows = of_setting[(of_setting["curve"] == curve) & of_setting["barrier"].notna()]
            flags = rows.groupby("metric")["barrier"].agg(lambda b: f"{int(b.sum())}/{len(b)}")
            counts.append({"setting": setting, "curve": curve, **{m: flags.get(m, "—") for m in metrics}})
    return pd.DataFrame(counts, columns=["setting", "curve", *metrics])


def _mcu_counts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """How many curves of each setting and curve kind hold MCU, break it, or failed."""
    counts = []
    for setting in ordered_settings(verdicts["setting"]):
        of_setting = verdicts[verdicts["setting"] == setting]
        for curve in ordered_curves(of_setting["curve"]):
            rows = of_setting[of_setting["curve"] == curve]
            ok = rows["status"] == "ok"
            counts.append({"setting": setting, "curve": curve, "MCU": int((rows["verdict"] == "MCU").sum()),
                           "no MCU": int((ok & (rows["verdict"] != "MCU")).sum()), "failed": int((~ok).sum())})
    return pd.DataFrame(counts, columns=["setting", "curve", "MCU", "no MCU", "failed"])


def _reference_rows(references: pd.DataFrame, task: str) -> pd.DataFrame:
    """Original vs retrained model metrics per forget ratio."""
    rows = references[references["task"] == task]
    metrics = metric_names(rows, task)
    rows = rows.sort_values(["ratio", "model"])  # original before retrained
    return rows[["ratio", "model", *metrics]].rename(columns={"ratio": "ratio (%)"})
