"""index.html of a report: every figure with a caption saying how to read it, the findings
and barrier tables of each task, its reference metrics, and the cells that failed or are missing.

Plain HTML with a little inline CSS, no JavaScript and no template engine: the page
must open from a copied folder or a shared drive. Rows of failed cells are shaded.
The page is a list of top-level sections (``<section id=...>``), each drawn by one function:
the facts under the title, the failed or missing cells, one per task, then the hyper-parameter
search when the sweep was searched (``mcu_ray.report.search``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

import pandas as pd

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 2em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f0f0f0; }
tr.failed td { background: #f6d5d5; }
td.MCU { color: #006400; font-weight: bold; }
figure { margin: 1em 0 2em; }
figcaption { max-width: 70em; font-size: 0.9em; line-height: 1.4; color: #333; }
img { max-width: 100%; border: 1px solid #ddd; }
p.note { max-width: 70em; }
"""


@dataclass(frozen=True)
class TaskSection:
    name: str
    figures: list[tuple[str, str]]  # (caption, PNG path relative to index.html; its PDF beside it)
    mcu_counts: pd.DataFrame  # setting, curve, MCU, no MCU, failed
    barriers: pd.DataFrame  # one row per cell and curve, display columns
    references: pd.DataFrame  # one row per ratio and model
    endpoints: pd.DataFrame  # one row per unlearned model
    pathway: pd.DataFrame  # original / source / pathway / retrained rows; empty without pathway methods
    metric_barriers: pd.DataFrame = field(default_factory=pd.DataFrame)  # setting, curve, "k/n" per metric
    findings: Findings | None = None


@dataclass(frozen=True)
class Findings:
    """What a task's curves say in numbers (``mcu_ray.report.findings``), shaped for the page."""

    tradeoff: dict  # metric -> +1 / -1: what "beats an endpoint" is judged on
    curves: int  # curves that finished
    outperforming: pd.DataFrame  # one row per curve with points beating both endpoints (its best point)
    similarity: pd.DataFrame  # method pairs ranked by linear retain barrier, per setting and ratio
    spread: pd.DataFrame  # barriers per setting, pair, ratio and curve over seeds (mean ± std)


@dataclass(frozen=True)
class SearchSection:
    """One searched (task, method) (``mcu_ray.report.search``), shaped for the page."""

    name: str  # the element id, and the prefix of its figure and table files: search_<task>_<method>
    task: str
    method: str
    facts: dict  # study and database, objectives, trials, forget ratios, selection rule
    figures: list[tuple[str, str]]  # (caption, PNG path relative to index.html; its PDF beside it)
    chosen: pd.DataFrame  # parameters, objectives and trial number: chosen vs default
    importance: pd.DataFrame  # fANOVA importance per parameter, a column per objective; empty: not computed
    importance_notes: list[str]  # why an objective has no importances, which parameters were fixed
    validation: pd.DataFrame  # chosen endpoints: ratio, metric, validation value, test-side value
    validation_notes: list[str]  # endpoints not in the store
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)  # every trial (the CSV / LaTeX tables only)


def index_html(sweep: str, storage: str, header: dict, sections: list[TaskSection],
               problems: pd.DataFrame | None = None, provenance: pd.DataFrame | None = None,
               search: list[SearchSection] = ()) -> str:
    """The whole page; ``header`` holds a few facts shown under the title (cells, spec hash, ...);
    ``problems``: the cells that failed or are missing (``report.tables.problem_cells``; None: no
    results to judge, no section); ``provenance``: what computed the rows (``report.tables.provenance_table``);
    ``search``: the searched (task, method)s, a section of their own when there are any."""
    parts = [_facts(sweep, storage, header, sections, search, problems is not None), _provenance(provenance),
             _problems(problems), *(_section(s) for s in sections), _search(search)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>MCU report: {escape(sweep)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>Mode connectivity in unlearning: sweep {escape(sweep)}</h1>\n"
            f"{''.join(parts)}</body></html>\n")


def _facts(sweep: str, storage: str, header: dict, sections: list[TaskSection], search: list[SearchSection],
           problems: bool) -> str:
    facts = "".join(f"<li>{escape(k)}: {escape(str(v))}</li>" for k, v in header.items())
    contents = '<li><a href="#problems">Cells that failed or are missing</a></li>' if problems else ""
    contents += "".join(f'<li><a href="#{escape(s.name)}">{escape(s.name)}</a></li>' for s in sections)
    if search:
        contents += '<li><a href="#search">Hyper-parameter search</a></li>'
    return (f'<section id="facts"><ul>{facts}<li>storage: {escape(storage)}</li></ul>\n'
            f"<p>Contents:</p><ul>{contents}</ul></section>\n")


def _problems(problems: pd.DataFrame | None) -> str:
    if problems is None:
        return ""
    if problems.empty:
        body = "<p>None: every cell the sweep file plans has rows, and every row is ok.</p>\n"
    else:
        counts = problems["status"].value_counts()
        body = (f"<p class=\"note\">{', '.join(f'{n} {s}' for s, n in counts.items())}. Failed or diverged: a model "
                f"the cell needs did not train (the reason names its artifact); its numbers are NaN and its figure "
                f"panels shaded. Missing: planned by the sweep file but without rows (not run yet, or its trial "
                f"stopped before writing them); run the sweep again to fill them in.</p>\n" + html_table(problems))
    return f'<section id="problems"><h2>Cells that failed or are missing</h2>\n{body}</section>\n'


def _provenance(table: pd.DataFrame | None) -> str:
    if table is None or table.empty:
        return ""
    return ('<section id="provenance"><h2>Provenance</h2>\n<p>The code, libraries, device and precision that '
            "computed the result rows "
            "(each model's row: the job that evaluated it), with the cells and rows each computed. A dirty "
            "checkout had uncommitted changes: its commit alone does not pin the code. "
            "<code>python -m mcu_ray.report STORAGE SWEEP --reproduce CELL_ID</code> prints the sweep file and "
            "command that rebuild one cell.</p>\n" + html_table(table) + "</section>\n")


def _pdf(png: str) -> str:
    """The PDF drawn beside a figure's PNG (mcu_ray.report.figures.save)."""
    return png.rsplit(".", 1)[0] + ".pdf"


def _figures(figures: list[tuple[str, str]]) -> str:
    """Each figure with its caption and a link to its PDF."""
    return "".join(f'<figure><img src="{escape(src)}" alt="{escape(caption)}">'
                   f'<figcaption>{escape(caption)} (<a href="{escape(_pdf(src))}">PDF</a>)</figcaption></figure>\n'
                   for caption, src in figures)


def _section(section: TaskSection) -> str:
    figures = _figures(section.figures)
    return (f'<section id="{escape(section.name)}"><h2>{escape(section.name)}</h2>\n'
            f"<h3>Curves with mode connectivity (MCU) per setting</h3>\n{html_table(section.mcu_counts)}"
            f"<h3>Figures</h3>\n{figures}"
            f"{_findings(section.findings)}"
            f"<h3>Barriers per cell and curve</h3>\n"
            f"<p>Retain barrier B<sub>r</sub> and forget cliff B<sub>f</sub> are the largest deviations of the "
            f"retain / forget loss from the chord between the endpoints (positive is bad); a curve has MCU when "
            f"both are within the loss tolerance.</p>\n{html_table(section.barriers)}"
            f"{_metric_barriers(section.metric_barriers)}"
            f"<h3>Reference models</h3>\n{_references(section.references)}"
            f"<h3>Unlearned models (endpoints)</h3>\n<p>Each endpoint once, whatever the number of curves "
            f"through it; compare with the reference models above.</p>\n{html_table(section.endpoints)}"
            f"{_pathway(section.pathway)}</section>\n")


def _findings(findings: Findings | None) -> str:
    if findings is None:
        return ""
    return ("<h3>Findings</h3>\n" + _outperforming(findings) + _similarity(findings.similarity)
            + _spread(findings.spread))


def _outperforming(findings: Findings) -> str:
    head = "<h4>Intermediate models that beat both endpoints</h4>\n"
    if not findings.tradeoff:
        return head + "<p>No trade-off metrics are defined for this task.</p>\n"
    words = ", ".join(f"{m} {'↑' if d > 0 else '↓'}" for m, d in findings.tradeoff.items())
    table = findings.outperforming
    text = (f"<p class=\"note\">A point 0 &lt; t &lt; 1 of a curve beats an endpoint when it is at least as good on "
            f"every trade-off metric ({escape(words)}) and strictly better on one; listed are the curves with a "
            f"point that beats both, {len(table)} of {findings.curves}. Per curve: how many points do, their t range, "
            f"and the point whose smallest gain is largest, with its gain on each metric over the better "
            f"endpoint (in the metric's units).</p>\n")
    return head + text + (html_table(table) if not table.empty else "")


def _block(heading: str, note: str, table: pd.DataFrame) -> str:
    """A heading, a note on how to read the table, and the table; nothing when the table is empty."""
    return "" if table.empty else f'{heading}\n<p class="note">{note}</p>\n' + html_table(table)


SEARCH_NOTE = ("Per task and method, Optuna (driven by Ray Tune) tried hyper-parameter settings and scored each "
               "trial on the validation view: its models' metrics on held-out data that the grid's ordinary "
               "evaluation does not score. The chosen setting's endpoints were then evaluated like any other (test "
               "split, report sets), so the tables below compare the chosen point with the defaults as the search "
               "saw them, and its validation-view metrics with its test-side ones.")
IMPORTANCE_NOTE = ("The share of each objective's variance over the complete trials that each parameter explains "
                   "(Optuna's fANOVA evaluator: a random forest fitted to the trials, seed 0; a column sums to 1). "
                   "High: the objective hinges on that parameter; near 0: any value in its range does. Few trials "
                   "make these rough.")
VALIDATION_NOTE = ("Per forget ratio, each metric of the chosen endpoint as the search saw it (validation view) and "
                   "as the grid's ordinary evaluation measured it (test split, report sets: never seen by the "
                   "search). A test side clearly worse than the validation view (lower on a ↑ metric, higher on a "
                   "↓ one) suggests the search fitted the validation view rather than the task.")


def _search(sections: list[SearchSection]) -> str:
    if not sections:
        return ""
    return (f'<section id="search"><h2>Hyper-parameter search</h2>\n<p class="note">{escape(SEARCH_NOTE)}</p>\n'
            f'{"".join(map(_searched, sections))}</section>\n')


def _searched(section: SearchSection) -> str:
    """One searched (task, method): its facts, figures, chosen point, importances and chosen endpoints."""
    facts = "".join(f"<li>{escape(k)}: {escape(str(v))}</li>" for k, v in section.facts.items())
    rule = section.facts.get("selection rule") or "nothing yet (no trial scored every forget ratio)"
    chosen = _block("<h4>Chosen point</h4>", f"The chosen hyper-parameters beside the defaults, with the objective "
                                             f"values of their trials (validation view); chosen by: {escape(rule)}.",
                    section.chosen)
    notes = "; ".join(section.importance_notes)
    if section.importance.empty:
        importance = f'<h4>Parameter importance (fANOVA)</h4>\n<p class="note">Nothing computed: {escape(notes)}.</p>\n'
    else:
        importance = _block("<h4>Parameter importance (fANOVA)</h4>",
                            escape(IMPORTANCE_NOTE + (f" Also: {notes}." if notes else "")), section.importance)
    missing = "; ".join(section.validation_notes)
    validation = _block("<h4>Chosen endpoints: validation view and test side</h4>",
                        escape(VALIDATION_NOTE + (f" {missing}." if missing else "")), section.validation)
    return (f'<h3 id="{escape(section.name)}">{escape(section.task)} · {escape(section.method.upper())}</h3>\n'
            f"<ul>{facts}</ul>\n{_figures(section.figures)}{chosen}{importance}{validation}")


def _similarity(ranking: pd.DataFrame) -> str:
    return _block("<h4>Method similarity: pairs ranked by linear retain barrier</h4>",
                  "Per setting and forget ratio, pairs of different methods from the lowest retain barrier B_r (nats) "
                  "on the straight line between their models to the highest: a low linear barrier means both methods "
                  "end in the same basin, i.e. act alike (the paper's mechanistic similarity). Mean ± std over seeds.",
                  ranking)


def _spread(spread: pd.DataFrame) -> str:
    return _block("<h4>Barriers over seeds</h4>",
                  "Per setting, method pair, ratio and curve kind: the retain barrier and forget cliff (nats) as mean "
                  "± sample standard deviation over the seeds that finished, and in how many seeds MCU holds.", spread)


def with_spread(frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """``columns``: {shown name: stored name}; each shown as 'mean ± std' from ``name`` and ``name_std``
    ('mean' alone when there is no spread: one seed); the ``_std`` columns dropped."""
    shown = frame.copy()
    for label, name in columns.items():
        shown[name] = [_format(m) if pd.isna(s) else f"{_format(m)} ± {_format(s)}"
                       for m, s in zip(frame[name], frame[f"{name}_std"])]
        shown = shown.drop(columns=f"{name}_std").rename(columns={name: label})
    return shown


def _pathway(table: pd.DataFrame) -> str:
    return _block("<h3>Pathway unlearning</h3>",
                  "At each forget ratio: the original, the source endpoint, the pathway model exported at t* of its "
                  "curve from the original, and the retrained model, each with its mean absolute gap to the retrained "
                  "model on the task's gap metrics; means over seeds. t* is chosen without the retrained model, as Shi "
                  "&amp; Wang's code chooses it: the forget and retain accuracy closest to the original's accuracy on "
                  "held-out data and on Dr, searched in [0.75, 1] by default. So the gap to the retrained model is out "
                  "of sample.", table)


def _metric_barriers(table: pd.DataFrame) -> str:
    return _block("<h3>Barriers per metric</h3>",
                  "Curves whose metric strays from the chord by more than its family's tolerance (losses, accuracies, "
                  "scores; Forget Quality: falls below the significance level while neither endpoint does), out of the "
                  "curves evaluated.", table)


def _references(references: pd.DataFrame) -> str:
    if references.empty:
        return "<p>No reference models stored for this task.</p>\n"
    return html_table(references)


def html_table(frame: pd.DataFrame) -> str:
    """A table with formatted numbers; a row whose ``status`` is not 'ok' gets class 'failed'."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.to_dict("records"):
        failed = record.get("status", "ok") != "ok"
        cells = "".join(_cell(value) for value in record.values())
        rows.append(f'<tr class="failed">{cells}</tr>' if failed else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>\n"


def _format(value) -> str:
    return "—" if pd.isna(value) else f"{value:.4g}"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "<td>—</td>"
    if isinstance(value, float):
        return f"<td>{_format(value)}</td>"
    if value == "MCU":
        return '<td class="MCU">MCU</td>'
    return f"<td>{escape(str(value))}</td>"
