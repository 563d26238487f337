"""The report of a sweep: figures, findings and an index page drawn from its result tables.

build_report reads the results, barriers and references tables of one sweep and
writes, under the output folder, one PNG (and PDF) per (task, setting), a method ×
method matrix per Met-type setting (paper Figure 3), one barrier summary per task, and
index.html tying them together with a caption per figure, the findings (points that beat
both endpoints, method similarity, spread over seeds), the barrier and reference tables and
the cells that failed or are missing; and, for a sweep whose hyper-parameters were searched
(``<sweep>/search/summary.json``), a section per searched task and method (``report.search``).
It reads only the store (and the search's Optuna database); nothing here needs Ray or a GPU.
"""
from __future__ import annotations

import os

import pandas as pd

from mcu_ray.report import captions, findings
from mcu_ray.report.drawing import Drawing, draw_all
from mcu_ray.report.files import report_tables, safe_file_name, write_tables
from mcu_ray.report.figures import barrier_figure, is_ordered_setting, mcu_matrix_figure, pathway_figure, setting_figure
from mcu_ray.report.page import Findings, TaskSection, index_html, with_spread
from mcu_ray.report.search import search_report
from mcu_ray.report.tables import (
    EmptySweepError, SweepTables, curve_verdicts, endpoint_table, load_sweep, method_pairs, metric_names, ordered_curves,
    ordered_settings, pair_label, pathway_curves, pathway_table, problem_cells, provenance_table,
)

__all__ = ["build_report", "EmptySweepError"]


def build_report(storage: str, sweep: str, out_dir: str, tolerance=None, workers: int | None = None,
                 csv_dir: str | None = None, latex_dir: str | None = None) -> str:
    """Draw every figure of ``<storage>/<sweep>`` into ``out_dir``; returns the path of index.html.

    Every verdict is decided here from the stored deviations: ``tolerance`` (a number for the
    losses, or a mapping per metric family, over the sweep file's; None: the sweep file's)
    changes them without recomputing anything. ``workers``: processes drawing figures (None: one
    per available CPU; 1: this one). ``csv_dir`` / ``latex_dir``: also write every table there
    (``report.files``). Raises EmptySweepError (a ValueError) when the sweep has no results and
    was not searched; a searched one without results yet gets a page of its search alone.
    """
    searched, drawings = search_report(storage, sweep, out_dir)
    try:
        tables = load_sweep(storage, sweep, tolerance)
    except EmptySweepError:
        if not searched:
            raise
        tables = None
    os.makedirs(out_dir, exist_ok=True)
    sections, header, problems, provenance = [], {"results": "none yet: the hyper-parameter search alone"}, None, None
    if tables is not None:
        verdicts = curve_verdicts(tables.results, tables.barriers, tables.tolerances)
        for task in sorted(tables.results["task"].unique()):
            section, to_draw = _task_section(task, tables, verdicts[verdicts["task"] == task], out_dir)
            sections.append(section)
            drawings += to_draw
        header = _header(tables.results, tables.tolerances)
        problems, provenance = problem_cells(tables, storage), provenance_table(tables.results)
    draw_all(drawings, workers)
    if csv_dir or latex_dir:
        write_tables(report_tables(storage, sweep, tolerance, [*sections, *searched]), csv_dir, latex_dir)
    index = os.path.join(out_dir, "index.html")
    with open(index, "w", encoding="utf-8") as page:
        page.write(index_html(sweep, storage, header, sections, problems, provenance, searched))
    return index


def _task_section(task: str, tables: SweepTables, verdicts: pd.DataFrame,
                  out_dir: str) -> tuple[TaskSection, list[Drawing]]:
    """One task's tables and captions, and the figures to draw for it."""
    results = tables.results[tables.results["task"] == task]
    metrics = metric_names(results, task)
    figures, drawings = [], []

    def add(name: str, caption: str, draw, *args) -> None:
        name = safe_file_name(name)
        figures.append((caption, name))
        drawings.append(Drawing(draw, os.path.join(out_dir, name), args))

    for setting in ordered_settings(results["setting"]):
        of_setting, setting_verdicts = results[results["setting"] == setting], verdicts[verdicts["setting"] == setting]
        add(f"{task}_{setting}.png", captions.setting_caption(task, setting, tables.tolerances,
                                                               of_setting["seed"].nunique()),
            setting_figure, task, setting, of_setting, setting_verdicts, tables.references, metrics)
        if is_ordered_setting(setting, setting_verdicts) and not setting_verdicts.empty:
            add(f"{task}_{setting}_matrix.png", captions.matrix_caption(task, setting), mcu_matrix_figure, task,
                setting, setting_verdicts)
    add(f"{task}_barriers.png", captions.barrier_caption(task, tables.tolerances), barrier_figure, task, verdicts)
    pathway = pathway_table(tables.pathway, task)
    if not pathway.empty:
        add(f"{task}_pathway.png", captions.pathway_caption(task), pathway_figure, task, pathway,
            pathway_curves(tables.pathway, task))
    section = TaskSection(task, figures, _mcu_counts(verdicts), _barrier_rows(verdicts),
                          _reference_rows(tables.references, task), endpoint_table(tables.results, task), pathway,
                          _metric_barriers(tables.barriers[tables.barriers["task"] == task], metrics),
                          _findings(task, results, verdicts))
    return section, drawings


def _findings(task: str, results: pd.DataFrame, verdicts: pd.DataFrame) -> Findings:
    """The task's findings (``report.findings``) as the page shows them."""
    tradeoff = findings.tradeoff(task)
    best = _sorted_cells(findings.best_points(findings.outperforming_points(results, task)))
    best = best.assign(methods=[pair_label(a, b) for a, b in zip(best["method_1"], best["method_2"])],
                       t_range=[f"{a:.3g}–{b:.3g}" if a != b else f"{a:.3g}"
                                for a, b in zip(best["first t"], best["last t"])])
    gains = [c for c in best.columns if c.startswith("gain ")]
    outperforming = best[["setting", "methods", "ratio", "seed", "curve", "points", "t_range", "t", *gains]].rename(
        columns={"ratio": "ratio (%)", "t_range": "t range", "t": "best t"})
    ranking = findings.similarity_ranking(verdicts)
    ranking = with_spread(ranking.assign(methods=[pair_label(a, b) for a, b in zip(ranking["method_1"],
                                                                                     ranking["method_2"])]),
                          {"linear retain barrier": "retain_barrier", "linear forget cliff": "forget_barrier"})
    ranking = ranking[["setting", "ratio", "rank", "methods", "seeds", "linear retain barrier",
                       "linear forget cliff"]].rename(columns={"ratio": "ratio (%)"})
    curves = verdicts[verdicts["status"] == "ok"][["cell_id", "curve"]].drop_duplicates()
    return Findings(tradeoff, len(curves), outperforming, ranking, _spread(verdicts))


def _spread(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Barriers over seeds as the page shows them; empty with one seed (the barrier table says it all)."""
    if verdicts["seed"].nunique() < 2:
        return pd.DataFrame()
    spread = _sorted_cells(findings.seed_spread(verdicts))
    spread = with_spread(spread.assign(methods=[pair_label(a, b) for a, b in zip(spread["method_1"],
                                                                                  spread["method_2"])]),
                         {"retain barrier": "retain_barrier", "forget cliff": "forget_barrier"})
    return spread[["setting", "methods", "ratio", "curve", "finished", "seeds", "retain barrier", "forget cliff",
                   "MCU"]].rename(columns={"ratio": "ratio (%)", "finished": "seeds finished"})


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
    """Rows in figure order: setting (Table 1), method pair, ratio, seed (where there is one), curve."""
    settings = {s: i for i, s in enumerate(ordered_settings(verdicts["setting"]))}
    pairs = {p: i for i, p in enumerate(method_pairs(verdicts))}
    curves = {c: i for i, c in enumerate(ordered_curves(verdicts["curve"]))}
    rank = pd.DataFrame({
        "setting": verdicts["setting"].map(settings),
        "pair": [pairs[p] for p in zip(verdicts["method_1"], verdicts["method_2"])],
        "ratio": verdicts["ratio"], "seed": verdicts["seed"] if "seed" in verdicts else 0,
        "curve": verdicts["curve"].map(curves),
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
