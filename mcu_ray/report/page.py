"""index.html of a report: every figure, the barrier table of each task and its reference metrics.

Plain HTML with a little inline CSS, no JavaScript and no template engine: the page
must open from a copied folder or a shared drive. Rows of failed cells are shaded.
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
img { max-width: 100%; border: 1px solid #ddd; }
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


def index_html(sweep: str, storage: str, header: dict, sections: list[TaskSection],
               provenance: pd.DataFrame | None = None) -> str:
    """The whole page; ``header`` holds a few facts shown under the title (cells, spec hash, ...),
    ``provenance`` what computed the rows (``report.tables.provenance_table``)."""
    facts = "".join(f"<li>{escape(k)}: {escape(str(v))}</li>" for k, v in header.items())
    contents = "".join(f'<li><a href="#{escape(s.name)}">{escape(s.name)}</a></li>' for s in sections)
    body = "".join(_section(s) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>MCU report: {escape(sweep)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>Mode connectivity in unlearning: sweep {escape(sweep)}</h1>\n"
            f"<ul>{facts}<li>storage: {escape(storage)}</li></ul>\n{_provenance(provenance)}"
            f"<p>Tasks:</p><ul>{contents}</ul>\n{body}</body></html>\n")


def _provenance(table: pd.DataFrame | None) -> str:
    if table is None or table.empty:
        return ""
    return ("<h2>Provenance</h2>\n<p>The code, libraries, device and precision that computed the result rows "
            "(each model's row: the job that evaluated it), with the cells and rows each computed. A dirty "
            "checkout had uncommitted changes: its commit alone does not pin the code. "
            "<code>python -m mcu_ray.report STORAGE SWEEP --reproduce CELL_ID</code> prints the sweep file and "
            "command that rebuild one cell.</p>\n" + html_table(table))


def _pdf(png: str) -> str:
    """The PDF drawn beside a figure's PNG (mcu_ray.report.figures.save)."""
    return png.rsplit(".", 1)[0] + ".pdf"


def _section(section: TaskSection) -> str:
    figures = "".join(f'<figure><img src="{escape(src)}" alt="{escape(caption)}">'
                      f'<figcaption>{escape(caption)} (<a href="{escape(_pdf(src))}">PDF</a>)</figcaption></figure>\n'
                      for caption, src in section.figures)
    return (f'<h2 id="{escape(section.name)}">{escape(section.name)}</h2>\n'
            f"<h3>Curves with mode connectivity (MCU) per setting</h3>\n{html_table(section.mcu_counts)}"
            f"<h3>Figures</h3>\n{figures}"
            f"<h3>Barriers per cell and curve</h3>\n"
            f"<p>Retain barrier B<sub>r</sub> and forget cliff B<sub>f</sub> are the largest deviations of the "
            f"retain / forget loss from the chord between the endpoints (positive is bad); a curve has MCU when "
            f"both are within the loss tolerance.</p>\n{html_table(section.barriers)}"
            f"{_metric_barriers(section.metric_barriers)}"
            f"<h3>Reference models</h3>\n{_references(section.references)}"
            f"<h3>Unlearned models (endpoints)</h3>\n<p>Each endpoint once, whatever the number of curves "
            f"through it; compare with the reference models above.</p>\n{html_table(section.endpoints)}"
            f"{_pathway(section.pathway)}")


def _pathway(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    return ("<h3>Pathway unlearning</h3>\n<p>At each forget ratio: the original, the source endpoint, the "
            "pathway model exported at t* of its curve from the original, and the retrained model, each with its mean "
            "absolute gap to the retrained model on the task's gap metrics; means over seeds. t* is chosen without "
            "the retrained model, as Shi &amp; Wang's code chooses it: the forget and retain accuracy closest to the "
            "original's accuracy on held-out data and on Dr, searched in [0.75, 1] by default. So the gap to the "
            "retrained model is out of sample.</p>\n" + html_table(table))


def _metric_barriers(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    return ("<h3>Barriers per metric</h3>\n<p>Curves whose metric strays from the chord by more than its family's "
            "tolerance (losses, accuracies, scores; Forget Quality: falls below the significance level while neither "
            "endpoint does), out of the curves evaluated.</p>\n" + html_table(table))


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


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "<td>—</td>"
    if isinstance(value, float):
        return f"<td>{value:.4g}</td>"
    if value == "MCU":
        return '<td class="MCU">MCU</td>'
    return f"<td>{escape(str(value))}</td>"
