"""The hyper-parameter search's part of the report: per searched (task, method), what Optuna tried and what it chose.

Reads ``<storage>/<sweep>/search/summary.json`` (written by the search driver, ``mcu_ray.search``) and
every study it names from its Optuna database, read only: nothing is created there. Per study: the
optimisation history, the Pareto front when there are several objectives, the chosen point against the
defaults, fANOVA parameter importances, and the chosen endpoints' validation-view metrics beside their
test-side ones (the grid's ordinary evaluation, in each endpoint's meta.json). No Ray.
"""
from __future__ import annotations

import json
import os

import numpy as np
import optuna
import pandas as pd
import pyarrow.fs as pafs
import sqlalchemy.engine
from matplotlib.figure import Figure

from mcu_ray.metrics import METRICS
from mcu_ray.report import captions
from mcu_ray.report.drawing import Drawing
from mcu_ray.report.files import safe_file_name
from mcu_ray.report.figures import OKABE_ITO, metric_words, plt, save  # plt: with the Agg backend figures sets
from mcu_ray.report.page import SearchSection
from mcu_ray.store import Store

SUMMARY = ("search", "summary.json")  # under <storage>/<sweep>
ARROWS = {"min": "↓", "max": "↑"}
SIGNS = {"min": 1.0, "max": -1.0}  # values times this: lower is better
COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
MARKS = {"default": dict(marker="s", s=110, facecolors="none", edgecolors=OKABE_ITO[1], linewidths=2, zorder=4),
         "chosen": dict(marker="*", s=220, color=OKABE_ITO[4], edgecolors="black", linewidths=0.6, zorder=5)}
PRUNED_STYLE = dict(marker="x", color="#999999", s=30, zorder=2)
PANEL = (7.0, 2.6)  # width, height of one history panel


def load_summary(storage: str, sweep: str) -> dict | None:
    """The search driver's summary.json of ``<storage>/<sweep>``; None when the sweep was not searched."""
    store = Store(storage)
    return json.loads(store.read_bytes(sweep, *SUMMARY)) if store.exists(sweep, *SUMMARY) else None


def database_url(db: str, store: Store, sweep: str) -> str:
    """The summary's database URL. A SQLite file that is no longer where the summary says (the store was
    copied elsewhere) is looked for beside summary.json; neither there: FileNotFoundError, rather than
    SQLite creating an empty file."""
    url = sqlalchemy.engine.make_url(db)
    if url.get_backend_name() != "sqlite" or not url.database or os.path.exists(url.database):
        return db
    beside = "/".join([store.root.rstrip("/"), sweep, SUMMARY[0], os.path.basename(url.database)])
    if isinstance(store.fs, pafs.LocalFileSystem) and os.path.exists(beside):
        return url.set(database=beside).render_as_string(hide_password=False)
    raise FileNotFoundError(f"study database {url.database} not found, nor beside summary.json")


def open_study(db: str, name: str) -> optuna.Study:
    """An existing study, read only: no table is created (a missing study raises KeyError)."""
    return optuna.load_study(study_name=name, storage=optuna.storages.RDBStorage(db, skip_table_creation=True))


def objective_label(name: str, direction: str) -> str:
    """'forget quality ↑': the registry's words for a metric, with the search's direction."""
    return f"{metric_words(name)} {ARROWS[direction]}"


def trial_table(study: optuna.Study, objectives: list, space: dict) -> pd.DataFrame:
    """One row per COMPLETE or PRUNED trial: its number, state, a column per objective (NaN where a
    pruned trial has no value), a column per parameter, and the forget ratios it finished."""
    names = [name for name, _ in objectives]
    trials = study.get_trials(deepcopy=False, states=(COMPLETE, PRUNED))
    params = list(space) + sorted({p for t in trials for p in t.params} - set(space))
    rows = [{"trial": t.number, "state": t.state.name,
             **{n: v for n, v in zip(names, t.values or ())}, **t.params,
             "ratios done": t.user_attrs.get("ratios_done")} for t in trials]
    table = pd.DataFrame(rows, columns=["trial", "state", *names, *params, "ratios done"])
    table[names] = table[names].astype(float)
    return table.sort_values("trial", ignore_index=True)


def best_so_far(values, direction: str) -> np.ndarray:
    """The best value among the first 1, 2, ... values (running min for 'min', max for 'max')."""
    return (np.minimum if direction == "min" else np.maximum).accumulate(np.asarray(values, dtype=float))


def pareto_front(values, directions: list[str]) -> np.ndarray:
    """Which rows of ``values`` (trials × objectives) no other row dominates: at least as good on every
    objective and strictly better on one, "better" by each objective's direction. Ties stay on the front."""
    scaled = np.asarray(values, dtype=float) * np.array([SIGNS[d] for d in directions])  # lower is better
    no_worse = (scaled[:, None, :] <= scaled[None, :, :]).all(axis=2)  # [j, i]: j no worse than i everywhere
    better = (scaled[:, None, :] < scaled[None, :, :]).any(axis=2)
    return ~(no_worse & better).any(axis=0)


# ---------------------------------------------------------------------- figures
def history_figure(path: str, task: str, method: str, trials: pd.DataFrame, objectives: list, marks: dict) -> None:
    """Draw history_figure_of into ``path`` (PNG) and its PDF."""
    save(history_figure_of(task, method, trials, objectives, marks), path)


def history_figure_of(task: str, method: str, trials: pd.DataFrame, objectives: list, marks: dict) -> Figure:
    """A panel per objective: its value per trial number; complete trials as dots, the best value so far
    as a step line (one objective only: with several, no trial need be best on all), pruned trials as
    grey crosses (with a value) or ticks on the axis (without one); ``marks``: trial numbers of
    'default' and 'chosen' (None: not in the study)."""
    fig, axes = plt.subplots(len(objectives), 1, squeeze=False, sharex=True,
                             figsize=(PANEL[0], PANEL[1] * len(objectives) + 0.8))
    complete, pruned = trials[trials["state"] == COMPLETE.name], trials[trials["state"] == PRUNED.name]
    for ax, (name, direction) in zip(axes[:, 0], objectives):
        ax.scatter(complete["trial"], complete[name], color=OKABE_ITO[0], s=22, zorder=3, label="complete trial")
        if len(objectives) == 1 and not complete.empty:
            ax.step(complete["trial"], best_so_far(complete[name], direction), where="post", color="black",
                    linewidth=1.2, label="best so far")
        valued = pruned[pruned[name].notna()]
        if not valued.empty:
            ax.scatter(valued["trial"], valued[name], label="pruned (value reached)", **PRUNED_STYLE)
        unvalued = pruned[pruned[name].isna()]
        if not unvalued.empty:
            ax.plot(unvalued["trial"], np.zeros(len(unvalued)), "|", color="#999999", markersize=12,
                    transform=ax.get_xaxis_transform(), label="pruned (no value)")
        for kind, number in marks.items():
            row = trials[(trials["trial"] == number) & trials[name].notna()]
            if not row.empty:
                ax.scatter(row["trial"], row[name], label=f"{kind} (trial {number})", **MARKS[kind])
        ax.set_ylabel(objective_label(name, direction), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("Optuna trial number", fontsize=8)
    fig.suptitle(f"{task} · {method.upper()}: hyper-parameter search, objective per trial", fontsize=9)
    fig.tight_layout()
    return fig


def pareto_figure(path: str, task: str, method: str, trials: pd.DataFrame, objectives: list, marks: dict) -> None:
    """Draw pareto_figure_of into ``path`` (PNG) and its PDF."""
    save(pareto_figure_of(task, method, trials, objectives, marks), path)


def pareto_figure_of(task: str, method: str, trials: pd.DataFrame, objectives: list, marks: dict) -> Figure:
    """Every complete trial on the first two objectives; the non-dominated front (over all objectives)
    filled and labelled with trial numbers, dominated trials hollow; default and chosen marked."""
    names, directions = [n for n, _ in objectives], [d for _, d in objectives]
    complete = trials[(trials["state"] == COMPLETE.name) & trials[names].notna().all(axis=1)]
    front = pareto_front(complete[names].to_numpy(), directions)
    (x, dx), (y, dy) = objectives[:2]
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    ax.scatter(complete.loc[~front, x], complete.loc[~front, y], facecolors="none", edgecolors="#999999", s=30,
               label="dominated")
    on_front = complete[front].sort_values(x)
    ax.scatter(on_front[x], on_front[y], color=OKABE_ITO[0], s=36, zorder=3, label="Pareto front")
    if len(objectives) == 2:  # the front's staircase; with more objectives it is not one in this projection
        # the edge of the region the front dominates: level until the next point where x is minimised
        ax.step(on_front[x], on_front[y], where="post" if dx == "min" else "pre", color=OKABE_ITO[0], linewidth=0.8)
    for _, row in on_front.iterrows():
        ax.annotate(str(int(row["trial"])), (row[x], row[y]), textcoords="offset points", xytext=(4, 4), fontsize=6)
    for kind, number in marks.items():
        row = complete[complete["trial"] == number]
        if not row.empty:
            ax.scatter(row[x], row[y], label=f"{kind} (trial {number})", **MARKS[kind])
    ax.set_xlabel(objective_label(x, dx), fontsize=8)
    ax.set_ylabel(objective_label(y, dy), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title(f"{task} · {method.upper()}: trials on {metric_words(x)} and {metric_words(y)}", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- tables
def describe_space(space: dict | None) -> str:
    """``{"loguniform": [1e-4, 0.1]}`` -> 'loguniform 0.0001, 0.1'; '' for a parameter not searched."""
    return "; ".join(f"{kind} {', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in args)}"
                     for kind, args in (space or {}).items())


def chosen_table(entry: dict) -> pd.DataFrame:
    """The chosen point against the defaults: every parameter (with its search space), every objective
    and the Optuna trial number of each."""
    space, chosen, default = entry.get("space", {}), entry.get("chosen") or {}, entry.get("default") or {}
    params = [*space, *sorted({*chosen, *default} - set(space))]
    rows = [{"kind": "parameter", "name": p, "search space": describe_space(space.get(p)),
             "default": default.get(p), "chosen": chosen.get(p)} for p in params]
    chosen_values, default_values = entry.get("chosen_values") or (), entry.get("default_values") or ()
    for i, (name, direction) in enumerate(entry["objectives"]):
        rows.append({"kind": f"objective {ARROWS[direction]}", "name": name, "search space": "",
                     "default": _at(default_values, i), "chosen": _at(chosen_values, i)})
    rows.append({"kind": "trial", "name": "Optuna trial number", "search space": "",
                 "default": entry.get("default_trial"), "chosen": entry.get("chosen_trial")})
    return pd.DataFrame(rows, columns=["kind", "name", "search space", "default", "chosen"])


def _at(values, i: int) -> float:
    return float(values[i]) if i < len(values) and values[i] is not None else float("nan")


def importance_table(study: optuna.Study, objectives: list) -> tuple[pd.DataFrame, list[str]]:
    """fANOVA importance (Optuna's, seed 0, normalised to sum 1) of every parameter that took two values
    in the complete trials, a column per objective; and a note per objective left out or parameter fixed.
    An objective is left out with fewer than 2 complete trials, no varied parameter, or one value only."""
    complete = study.get_trials(deepcopy=False, states=(COMPLETE,))
    columns, notes, shared_any, varied_any = {}, [], set(), set()
    for i, (name, direction) in enumerate(objectives):
        label = objective_label(name, direction)
        scored = [t for t in complete if t.values is not None and len(t.values) > i and np.isfinite(t.values[i])]
        shared = set.intersection(*(set(t.params) for t in scored)) if scored else set()
        varied = sorted(p for p in shared if len({repr(t.params[p]) for t in scored}) > 1)
        shared_any |= shared
        varied_any |= set(varied)
        if len(scored) < 2:
            notes.append(f"{label}: not computed, {len(scored)} complete trial(s) with a value (fANOVA needs 2)")
        elif not varied:
            notes.append(f"{label}: not computed, no parameter took two values in the complete trials")
        elif len({t.values[i] for t in scored}) < 2:
            notes.append(f"{label}: not computed, every complete trial has the same value")
        else:
            columns[label] = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=varied,
                target=lambda t, i=i: t.values[i])
    if shared_any - varied_any:
        notes.append(f"the same in every complete trial, so not in the table: "
                     f"{', '.join(sorted(shared_any - varied_any))}")
    if not columns:
        return pd.DataFrame(), notes
    table = pd.DataFrame(columns)
    table = table.sort_values(list(table.columns), ascending=False).rename_axis("parameter").reset_index()
    return table, notes


def validation_table(store: Store, entry: dict, validation: dict) -> tuple[pd.DataFrame, list[str]]:
    """Per forget ratio and metric: the chosen trial's validation-view value (``validation``: its
    user attribute, ratio -> metric -> value) beside the test-side value of the chosen endpoint at
    that ratio (its meta.json ``metrics``); and a note per endpoint not in the store."""
    endpoints = {float(r): key for r, key in (entry.get("chosen_endpoints") or {}).items()}
    validation = {float(r): values for r, values in validation.items()}
    rows, notes = [], []
    for ratio in sorted({*endpoints, *validation}):
        key, test = endpoints.get(ratio), {}
        if key is not None and store.has_artifact(key):
            test = store.read_meta(key).get("metrics", {})
        elif key is not None:
            notes.append(f"endpoint {key} ({ratio:g} %) is not in the store")
        valid = validation.get(ratio, {})
        known = [m for m in METRICS if m in valid or m in test]
        for metric in known + sorted({*valid, *test} - set(known)):
            rows.append({"ratio (%)": ratio, "metric": metric, "validation": _number(valid.get(metric)),
                         "test side": _number(test.get(metric))})
    return pd.DataFrame(rows, columns=["ratio (%)", "metric", "validation", "test side"]), notes


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


# ---------------------------------------------------------------------- the page's part
def search_report(storage: str, sweep: str, out_dir: str) -> tuple[list[SearchSection], list[Drawing]]:
    """The page's sections (one per searched task and method) and the figures to draw for them into
    ``out_dir``; nothing when the sweep has no summary.json."""
    summary = load_summary(storage, sweep)
    if summary is None:
        return [], []
    store = Store(storage)
    try:
        db, missing = database_url(summary["db"], store, sweep), ""
    except FileNotFoundError as err:
        db, missing = summary["db"], str(err)
    sections, drawings = [], []
    for entry in summary["studies"]:
        section, to_draw = _study_section(entry, db, missing, store, out_dir)
        sections.append(section)
        drawings += to_draw
    return sections, drawings


def _study_section(entry: dict, db: str, missing: str, store: Store,
                   out_dir: str) -> tuple[SearchSection, list[Drawing]]:
    """One searched (task, method): what the summary says, and what its study adds when it reads."""
    task, method, objectives = entry["task"], entry["method"], [tuple(o) for o in entry["objectives"]]
    name = safe_file_name(f"search_{task}_{method}")
    shown_db = sqlalchemy.engine.make_url(db).render_as_string(hide_password=True)  # a server's password stays out
    try:
        study = None if missing else open_study(db, entry["study"])
    except KeyError:
        missing = f"no study {entry['study']} in {shown_db}"
    facts = {"study": f"{entry['study']} ({shown_db})",
             "objectives": ", ".join(objective_label(n, d) for n, d in objectives),
             "forget ratios (%)": ", ".join(f"{r:g}" for r in entry.get("ratios", ())),
             "selection rule": entry.get("rule", "")}
    chosen = chosen_table(entry)
    if missing:  # what the summary alone tells
        validation, validation_notes = validation_table(store, entry, {})
        return SearchSection(name, task, method, {**facts, "trials": f"{entry.get('trials')} planned; {missing}"},
                             [], chosen, pd.DataFrame(), [missing], validation, validation_notes), []
    trials = trial_table(study, objectives, entry.get("space", {}))
    states = trials["state"].value_counts()
    facts["trials"] = (f"{states.get(COMPLETE.name, 0)} complete, {states.get(PRUNED.name, 0)} pruned, "
                       f"of {entry.get('trials')} planned")
    marks = {"default": entry.get("default_trial"), "chosen": entry.get("chosen_trial")}
    figures, drawings = [], []

    def add(suffix: str, caption: str, draw) -> None:
        file = f"{name}_{suffix}.png"
        figures.append((caption, file))
        drawings.append(Drawing(draw, os.path.join(out_dir, file), (task, method, trials, objectives, marks)))

    bare = trials[trials["state"] == PRUNED.name][[n for n, _ in objectives]].isna().all(axis=1)
    in_words = [(metric_words(n), d) for n, d in objectives]
    add("history", captions.search_history_caption(task, method, in_words, int((~bare).sum()), int(bare.sum())),
        history_figure)
    if len(objectives) > 1:
        add("pareto", captions.search_pareto_caption(task, method, in_words, entry.get("rule", "")), pareto_figure)
    importance, importance_notes = importance_table(study, objectives)
    chosen_trial = [t for t in study.get_trials(deepcopy=False) if t.number == entry.get("chosen_trial")]
    validation, validation_notes = validation_table(
        store, entry, chosen_trial[0].user_attrs.get("validation", {}) if chosen_trial else {})
    return SearchSection(name, task, method, facts, figures, chosen, importance, importance_notes, validation,
                         validation_notes, trials), drawings
