"""The report's figures (matplotlib, Agg backend), in the style of the paper's appendix.

setting_figure: one PNG per (task, setting); a row per forget ratio, a column per
method pair, each panel the metrics along t for the linear (solid) and quadratic
Bezier (dashed) curves, losses on a symlog right axis. barrier_figure: one PNG per
task, heat maps of the retain barrier and forget cliff per setting × pair.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import SymLogNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullLocator, StrMethodFormatter  # noqa: E402

from mcu_ray.report.tables import (  # noqa: E402
    PATHWAY_LABELS, PATHWAY_MODELS, method_pairs, ordered_curves, ordered_settings, pair_label, panel_verdict, retrained_values,
)

CURVE_STYLES = {"linear": "-", "bezier": "--", "polychain": ":"}  # other curve kinds: dash-dot
CURVE_NAMES = {"linear": "linear", "bezier": "Bezier", "polychain": "polygonal chain"}
PANEL_INCHES = (3.3, 2.5)  # width, height of one panel
DPI = 110
LOSS_LINTHRESH = 1.0  # the loss axis is linear below 1 and logarithmic above (Bezier losses reach 10+)
LOSS_TICKS = (0, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
FAILED_COLOUR, MISSING_COLOUR = "#f6d5d5", "#eeeeee"


def is_loss(metric: str) -> bool:
    """Losses are unbounded: they go on the right axis."""
    return "loss" in metric


def is_reference_metric(metric: str) -> bool:
    """Metrics drawn as a dotted line at the retrained model's value (e.g. acc_forget)."""
    return "forget" in metric and not is_loss(metric)


# ---------------------------------------------------------------------- curves of one setting
MAX_COLUMNS = 4  # panels per row before the method pairs wrap


def setting_figure(path: str, task: str, setting: str, results: pd.DataFrame, verdicts: pd.DataFrame,
                   references: pd.DataFrame, metrics: list[str]) -> None:
    """Metrics along every curve of one (task, setting): rows = forget ratios, columns = method pairs."""
    ratios = sorted(results["ratio"].unique())
    pairs = method_pairs(results)
    colours = {m: f"C{i}" for i, m in enumerate(metrics)}
    limits = _axis_limits(results, metrics)
    reference = {r: {m: v for m, v in retrained_values(references, task, r).items()
                     if m in metrics and is_reference_metric(m)} for r in ratios}
    # Many method pairs (Met settings: 12 for 4 methods) wrap onto several rows per ratio.
    cols = min(len(pairs), MAX_COLUMNS)
    rows_per_ratio = -(-len(pairs) // cols)
    n_rows = len(ratios) * rows_per_ratio
    fig, axes = plt.subplots(n_rows, cols, squeeze=False, layout="constrained",
                             figsize=(PANEL_INCHES[0] * cols + 1, PANEL_INCHES[1] * n_rows + 1))
    for i, ratio in enumerate(ratios):
        for j, pair in enumerate(pairs):
            row, col = i * rows_per_ratio + j // cols, j % cols
            rows, cell_verdicts = _panel_rows(results, ratio, pair), _panel_rows(verdicts, ratio, pair)
            ax = axes[row, col]
            loss_ax = _draw_panel(ax, rows, reference[ratio], metrics, colours, limits)
            ax.set_title(f"{pair_label(*pair)}{_seed_note(rows)}\n{_verdict_line(cell_verdicts)}", fontsize=8.5)
            _label_axes(ax, loss_ax, first_col=col == 0, last_col=col == cols - 1 or j == len(pairs) - 1,
                        bottom=row == n_rows - 1 or j + cols >= len(pairs) and i == len(ratios) - 1, ratio=ratio)
        for j in range(len(pairs), rows_per_ratio * cols):  # empty slots of the last wrapped row
            axes[i * rows_per_ratio + j // cols, j % cols].set_axis_off()
    fig.suptitle(f"{task} · {setting}: metrics along the curves between unlearned models", fontsize=12)
    handles = _legend_handles(ordered_curves(results["curve"].dropna()), metrics, colours,
                              with_reference=any(reference.values()))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 2 * len(pairs)), fontsize=8,
               frameon=False)  # about two legend entries fit under each panel
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _panel_rows(frame: pd.DataFrame, ratio: float, pair: tuple[str, str]) -> pd.DataFrame:
    return frame[(frame["ratio"] == ratio) & (frame["method_1"] == pair[0]) & (frame["method_2"] == pair[1])]


def _draw_panel(ax, rows: pd.DataFrame, reference: dict, metrics: list[str], colours: dict, limits: dict):
    """Seed-mean metrics along t, or a shaded 'failed' / 'not run' panel; returns the loss axis if any."""
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        _empty_panel(ax, ", ".join(sorted(set(rows["status"]) - {"ok"})) or "not run", failed=len(rows) > 0)
        return None
    loss_ax = ax.twinx() if any(is_loss(m) for m in metrics) else None
    means = ok.groupby(["curve", "t"])[metrics].mean()  # over the seeds that finished
    for curve in ordered_curves(ok["curve"]):
        along = means.loc[curve]
        for metric in metrics:
            target = loss_ax if is_loss(metric) else ax
            target.plot(along.index, along[metric], CURVE_STYLES.get(curve, "-."), color=colours[metric], lw=1.3)
    for metric, value in reference.items():
        ax.axhline(value, color=colours[metric], ls=":", lw=1.1)
    ax.set_xlim(0, 1)
    ax.set_ylim(*limits["left"])
    ax.tick_params(labelsize=7)
    if loss_ax is not None:
        loss_ax.set_yscale("symlog", linthresh=LOSS_LINTHRESH)
        loss_ax.set_ylim(*limits["loss"])
        loss_ax.set_yticks([v for v in LOSS_TICKS if v <= limits["loss"][1]])
        loss_ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        loss_ax.yaxis.set_minor_locator(NullLocator())
        loss_ax.tick_params(labelsize=7)
    return loss_ax


def _empty_panel(ax, text: str, failed: bool) -> None:
    ax.set_facecolor(FAILED_COLOUR if failed else MISSING_COLOUR)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=13,
            color="#8b0000" if failed else "#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _label_axes(ax, loss_ax, first_col: bool, last_col: bool, bottom: bool, ratio: float) -> None:
    """Axis labels and tick labels only on the outer panels, so the grid stays readable."""
    if first_col:
        ax.set_ylabel(f"forget {ratio:g}%\naccuracy / score", fontsize=9)
    else:
        ax.tick_params(labelleft=False)
    if loss_ax is not None and last_col:
        loss_ax.set_ylabel("loss (symlog)", fontsize=8)
    elif loss_ax is not None:
        loss_ax.tick_params(labelright=False)
    if bottom:
        ax.set_xlabel("t", fontsize=9)


def _axis_limits(results: pd.DataFrame, metrics: list[str]) -> dict:
    """y ranges shared by every panel of a figure: at least [0, 1] on the left, losses from 0."""
    ok = results[results["status"] == "ok"]
    left = ok[[m for m in metrics if not is_loss(m)]].to_numpy(float)
    losses = ok[[m for m in metrics if is_loss(m)]].to_numpy(float)
    low = min(0.0, np.nanmin(left)) if np.isfinite(left).any() else 0.0
    high = max(1.0, np.nanmax(left)) if np.isfinite(left).any() else 1.0
    pad = 0.04 * (high - low)
    loss_high = np.nanmax(losses) if np.isfinite(losses).any() else 1.0
    return {"left": (low - pad, high + pad), "loss": (0.0, max(loss_high, 1e-3) * 1.15)}


def _seed_note(rows: pd.DataFrame) -> str:
    """' (mean of 3 seeds)' when several seeds exist, counting the seeds that finished."""
    seeds = rows["seed"].nunique()
    if seeds <= 1:
        return ""
    finished = rows.loc[rows["status"] == "ok", "seed"].nunique()
    return f" (mean of {finished}/{seeds} seeds)" if finished < seeds else f" (mean of {seeds} seeds)"


def _verdict_line(verdicts: pd.DataFrame) -> str:
    """'linear: MCU, bezier: barrier' for one panel."""
    return ", ".join(f"{curve}: {panel_verdict(verdicts.loc[verdicts['curve'] == curve, 'verdict'])}"
                     for curve in ordered_curves(verdicts["curve"]))


def _legend_handles(curves: list[str], metrics: list[str], colours: dict, with_reference: bool) -> list:
    handles = [Line2D([], [], color=colours[m], lw=2, label=f"{m} (right axis)" if is_loss(m) else m)
               for m in metrics]
    handles += [Line2D([], [], color="black", ls=CURVE_STYLES.get(c, "-."), label=CURVE_NAMES.get(c, c))
                for c in curves]
    if with_reference:
        handles.append(Line2D([], [], color="grey", ls=":", label="retrained model"))
    return handles


# ---------------------------------------------------------------------- barrier summary of one task
def barrier_figure(path: str, task: str, verdicts: pd.DataFrame) -> None:
    """Heat maps of the retain barrier B_r and forget cliff B_f (mean over seeds; grey ×: failed)."""
    table = verdicts.groupby(["setting", "method_1", "method_2", "ratio", "curve"])[
        ["retain_barrier", "forget_barrier"]].mean()
    rows = [(setting, *pair) for setting in ordered_settings(verdicts["setting"])
            for pair in method_pairs(verdicts[verdicts["setting"] == setting])]
    columns = [(ratio, curve) for ratio in sorted(verdicts["ratio"].unique())
               for curve in ordered_curves(verdicts["curve"])]
    fig, axes = plt.subplots(1, 2, layout="constrained", sharey=True,
                             figsize=(2 * (1.5 + 0.75 * len(columns)) + 2, 1.5 + 0.3 * len(rows)))
    titles = {"retain_barrier": "retain barrier $B_r$ (retain loss above chord)",
              "forget_barrier": "forget cliff $B_f$ (forget loss below chord)"}
    for ax, (quantity, title) in zip(axes, titles.items()):
        grid = np.array([[_lookup(table, quantity, row + column) for column in columns] for row in rows])
        _heat_map(fig, ax, grid)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(columns)), [f"{r:g}% {c}" for r, c in columns], rotation=45, ha="right", fontsize=8)
    axes[0].set_yticks(range(len(rows)), [f"{s}  {pair_label(m1, m2)}" for s, m1, m2 in rows], fontsize=8)
    fig.suptitle(f"{task}: barriers per setting and method pair (grey ×: failed)", fontsize=12)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _lookup(table: pd.DataFrame, quantity: str, key: tuple) -> float:
    return float(table.loc[key, quantity]) if key in table.index else np.nan


def _heat_map(fig, ax, grid: np.ndarray) -> None:
    """Red where a barrier stands; symlog colours so that small and huge barriers both read."""
    top = np.nanmax(grid) if np.isfinite(grid).any() else 1.0
    norm = SymLogNorm(linthresh=0.01, vmin=0.0, vmax=max(top, 0.02))
    cmap = plt.get_cmap("Reds").with_extremes(bad="#cccccc")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        dark = np.isfinite(value) and norm(value) > 0.6
        ax.text(j, i, "×" if np.isnan(value) else f"{value:.2g}", ha="center", va="center", fontsize=7,
                color="white" if dark else "black")
    fig.colorbar(image, ax=ax, shrink=0.8)


# ---------------------------------------------------------------------- pathway unlearning
PATHWAY_COLOURS = {"original": "#1f77b4", "source": "#d62728", "pathway": "#2ca02c", "retrained": "#7f7f7f"}


def pathway_figure(path: str, task: str, table: pd.DataFrame, curves: pd.DataFrame) -> None:
    """A row per forget ratio. A column per source method: bars of every bounded metric for the
    original, the source endpoint, the pathway model at t* and the retrained model, gaps in the title. Last
    column: the mean gap to the retrained model along each pathway curve, t* marked."""
    ratios, sources = sorted(table["ratio (%)"].unique()), sorted(table["source"].unique())
    metrics = [c for c in table.columns if c not in PATHWAY_LABELS and not is_loss(c)]
    fig, axes = plt.subplots(len(ratios), len(sources) + 1, squeeze=False,
                             figsize=(max(PANEL_INCHES[0], 0.5 * len(metrics)) * (len(sources) + 1) + 0.5,
                                      PANEL_INCHES[1] * len(ratios) + 0.8))
    width = 0.8 / len(PATHWAY_MODELS)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ratio in enumerate(ratios):
        gap_ax = axes[i, -1]
        for j, source in enumerate(sources):
            ax, rows = axes[i, j], table[(table["ratio (%)"] == ratio) & (table["source"] == source)]
            by_model = {r["model"]: r for _, r in rows.iterrows()}
            for k, model in enumerate(PATHWAY_MODELS):
                if model in by_model:
                    offset = (k - (len(PATHWAY_MODELS) - 1) / 2) * width
                    ax.bar(np.arange(len(metrics)) + offset, [by_model[model][m] for m in metrics], width,
                           color=PATHWAY_COLOURS[model], label=model)
            gaps = " → ".join(f"{by_model[m]['gap to retrained']:.3f}" for m in ("source", "pathway")
                              if m in by_model)
            t_star = by_model["pathway"]["t*"] if "pathway" in by_model else float("nan")
            ax.set_title(f"{source.upper()} → pathway, {ratio:g} %\ngap {gaps} (t*={t_star:.2f})", fontsize=8)
            ax.set_xticks(np.arange(len(metrics)), metrics, rotation=45, ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            along = curves[(curves["ratio"] == ratio) & (curves["source_method"] == source)]
            colour = colours[j % len(colours)]
            gap_ax.plot(along["t"], along["gap"], color=colour, label=source.upper())
            if np.isfinite(t_star):
                gap_ax.axvline(t_star, color=colour, linestyle=":", linewidth=1)
        gap_ax.set_title(f"gap to retrained along the curve, {ratio:g} %", fontsize=8)
        gap_ax.set_xlabel("t (0 = original, 1 = source)", fontsize=7)
        gap_ax.tick_params(labelsize=7)
        gap_ax.legend(fontsize=7)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=len(PATHWAY_MODELS), fontsize=7)
    fig.suptitle(f"{task}: pathway unlearning vs its source endpoint and the retrained model "
                 f"(gap = mean |metric - retrained| on the gap metrics, out of sample: t* is chosen without the "
                 f"retrained model; means over seeds)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the legend below the panels
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
