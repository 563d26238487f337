"""The report's figures (matplotlib, Agg backend), in the layout of the paper.

setting_figure: per (task, setting), a block of rows per forget ratio and a column per method
pair; each block one small panel per metric family (accuracy, score, loss, Forget Quality on a
log axis with the 0.05 line), so no panel mixes scales; the retrained model's value dotted for
every metric; the t axis named by its endpoints. barrier_figure: per task, heat maps of the
retain barrier and forget cliff per setting × pair, ✓ within tolerance. mcu_matrix_figure: the
paper's Figure 3, per Met-type setting a method × method matrix per ratio and curve kind.
Each ``*_figure_of`` returns the matplotlib Figure (tests inspect it); ``*_figure`` saves PNG and
PDF. A metric keeps its colour (Okabe–Ito) in every figure.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import SymLogNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import NullLocator, StrMethodFormatter  # noqa: E402

from mcu_ray.plan import SETTINGS_TABLE  # noqa: E402
from mcu_ray.report.tables import (  # noqa: E402
    NO_CURVE, PATHWAY_LABELS, PATHWAY_MODELS, method_pairs, ordered_curves, ordered_settings, pair_label, panel_verdict, retrained_values,
)
from mcu_ray.metrics import METRICS  # noqa: E402
from mcu_ray.tables import metric_names as registered_metrics  # noqa: E402

CURVE_STYLES = {"linear": "-", "bezier": "--", "polychain": ":"}  # other curve kinds: dash-dot
CURVE_NAMES = {"linear": "linear", "bezier": "Bezier", "polychain": "polygonal chain"}
DPI = 110
LOSS_LINTHRESH = 1.0  # the loss axis is linear below 1 and logarithmic above (Bezier losses reach 10+)
LOSS_TICKS = (0, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
FQ_THRESHOLD = 0.05  # TOFU's significance line: Forget Quality above it = indistinguishable from retrained
FQ_FLOOR = 1e-12  # lowest Forget Quality drawn on the log axis (p-values of 0 sit here)
FAILED_COLOUR, MISSING_COLOUR = "#f6d5d5", "#eeeeee"
# Okabe & Ito (2008), colour-blind safe, without its pale yellow, in the order of the registered
# metrics (metric_colour): every task's figure metrics get distinct colours (digits: the first six;
# TOFU: FQ, MU, ROUGE-L and the losses wrap onto the unused ones).
OKABE_ITO = ("#0072b2", "#e69f00", "#009e73", "#56b4e9", "#d55e00", "#cc79a7", "#000000")
HOLDS_COLOUR = "#009e73"  # the mark where MCU holds / a barrier is within tolerance

# One panel per metric family, in this order (families of the registry, mcu_ray.metrics).
FAMILIES = ("accuracy", "score", "loss", "forget_quality")
FAMILY_WORDS = {"accuracy": "accuracy", "score": "score (0–1)", "loss": "loss (nats)",
                "forget_quality": "Forget Quality (p)"}
ARROWS = {1: "↑", -1: "↓"}


def is_loss(metric: str) -> bool:
    """Losses are unbounded: they get their own panel on a symlog axis."""
    return family_of(metric) == "loss"


def family_of(metric: str) -> str:
    """The metric's family in the registry (mcu_ray.metrics); a metric it does not declare: score."""
    return METRICS[metric].family if metric in METRICS else "score"


def metric_words(metric: str) -> str:
    """The registry's words for a metric (``acc_forget`` -> 'forget accuracy'); an undeclared one's name."""
    return METRICS[metric].label if metric in METRICS else metric.replace("_", " ")


def metric_label(metric: str) -> str:
    """Words and the better direction after unlearning, from the registry: 'forget accuracy ↓'."""
    arrow = ARROWS[METRICS[metric].sign] if metric in METRICS else ""
    return f"{metric_words(metric)} {arrow}".strip()


def metric_colour(metric: str) -> str:
    """The same colour for a metric in every figure: its place among the registered metrics."""
    registered = registered_metrics()
    index = registered.index(metric) if metric in registered else len(registered) + sum(map(ord, metric))
    return OKABE_ITO[index % len(OKABE_ITO)]


def save(fig, path: str, keep: bool = False) -> None:
    """Write ``path`` (PNG) and the same figure as PDF beside it; then close it, unless ``keep``."""
    fig.savefig(path, dpi=DPI)
    fig.set_layout_engine("none")  # keep the layout the PNG computed: the PDF need not compute it again
    fig.savefig(path.rsplit(".", 1)[0] + ".pdf")
    if not keep:
        plt.close(fig)


# ---------------------------------------------------------------------- curves of one setting
MAX_COLUMNS = 4  # method pairs per row before they wrap


def setting_figure(path: str, task: str, setting: str, results: pd.DataFrame, verdicts: pd.DataFrame,
                   references: pd.DataFrame, metrics: list[str]) -> None:
    """Draw setting_figure_of into ``path`` (PNG) and its PDF, on this process's figure of that shape."""
    save(setting_figure_of(task, setting, results, verdicts, references, metrics, reuse=True), path, keep=True)


def setting_figure_of(task: str, setting: str, results: pd.DataFrame, verdicts: pd.DataFrame,
                      references: pd.DataFrame, metrics: list[str], reuse: bool = False):
    """Metrics along every curve of one (task, setting): a block of rows per forget ratio, a column
    per method pair; each block one small panel per metric family, so no panel mixes scales.

    ``reuse``: draw on the figure this process last drew of the same shape, cleared (a grid's
    figures share a few shapes, and making hundreds of panels costs more than drawing them); the
    figure returned is then overwritten by the next call of that shape."""
    ratios = sorted(results["ratio"].unique())
    pairs = method_pairs(results)
    families = [f for f in FAMILIES if any(family_of(m) == f for m in metrics)]
    families += sorted({family_of(m) for m in metrics} - set(families))
    by_family = {f: [m for m in metrics if family_of(m) == f] for f in families}
    reference = {r: {m: v for m, v in retrained_values(references, task, r).items() if m in metrics}
                 for r in ratios}
    limits = _axis_limits(results, metrics, list(reference.values()))
    # Many method pairs (Met settings: 12 for 4 methods) wrap onto several blocks per ratio.
    cols = min(len(pairs), MAX_COLUMNS)
    blocks_per_ratio = -(-len(pairs) // cols)
    handles = _legend_handles(ordered_curves(results["curve"].dropna()), metrics,
                              with_reference=any(reference.values()), with_fq="forget_quality" in families)
    legend_columns = min(len(handles), max(3, 2 * cols))
    fig, axes = _panel_grid(len(ratios) * blocks_per_ratio, tuple(families), cols, -(-len(handles) // legend_columns),
                            reuse)
    stats = curve_stats(results, metrics)
    for i, ratio in enumerate(ratios):
        for j, pair in enumerate(pairs):
            top, col = (i * blocks_per_ratio + j // cols) * len(families), j % cols
            rows, cell_verdicts = _panel_rows(results, ratio, pair), _panel_rows(verdicts, ratio, pair)
            curves = stats.get((ratio, *pair), {})
            for k, family in enumerate(families):
                ax = axes[top + k, col]
                if curves:
                    _draw_panel(ax, curves, reference[ratio], [metrics.index(m) for m in by_family[family]], metrics,
                                family, limits)
                else:
                    _empty_panel(ax, ", ".join(sorted(set(rows["status"]) - {"ok"})) or "not run",
                                 failed=len(rows) > 0)
                if col == 0:
                    label = family_label(family, by_family[family])
                    ax.set_ylabel(f"forget {ratio:g} %\n{label}" if k == 0 else label, fontsize=8)
                else:  # a family's y axis is the same in every column: numbered once, on the left
                    ax.tick_params(labelleft=False)
                if k < len(families) - 1:
                    ax.tick_params(labelbottom=False)
            axes[top, col].set_title(f"{pair_label(*pair)}{_seed_note(rows)}\n{_verdict_line(cell_verdicts)}",
                                     fontsize=8.5)
            axes[top + len(families) - 1, col].set_xlabel(endpoints_label(rows, pair), fontsize=7.5)
        for j in range(len(pairs), blocks_per_ratio * cols):  # empty slots of the last wrapped block
            for k in range(len(families)):
                axes[(i * blocks_per_ratio + j // cols) * len(families) + k, j % cols].set_axis_off()
    height = fig.get_figheight()
    fig.suptitle(f"{task} · {setting}: metrics along the curves between unlearned models\n"
                 f"(↑ / ↓: higher / lower is better after unlearning)", fontsize=11, y=1 - 0.1 / height, va="top")
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.05 / height), ncol=legend_columns,
               fontsize=8, frameon=False)
    return fig


# Panels placed by hand, in inches: matplotlib's constrained layout costs seconds in a figure of a
# whole grid (hundreds of panels), and these panels need no search: each block of family panels
# shares its x axis, so only the block's last panel has x tick labels, and only the first column y ones.
AXES_INCHES = (2.6, 1.2)  # width, height of one family panel
GAPS = {"left": 1.05, "right": 0.25, "column": 0.3, "family": 0.1, "block": 1.0, "top": 1.05, "bottom": 0.55,
        "legend row": 0.22}  # inches


_GRIDS: dict = {}  # shape -> (figure, axes) kept by this process for setting_figure_of(reuse=True)


def _panel_grid(blocks: int, families: tuple, cols: int, legend_rows: int, reuse: bool = False):
    """A figure with ``blocks`` blocks of a panel row per family and ``cols`` columns; axes row-major.
    ``reuse``: the one kept for this shape, cleared of what was drawn (its panels keep their place,
    y scale and ticks), else a new one, kept."""
    shape = (blocks, families, cols, legend_rows)
    if reuse and shape in _GRIDS:
        fig, axes = _GRIDS[shape]
        for ax in axes.flat:
            for artist in [*ax.lines, *ax.collections, *ax.texts]:
                artist.remove()
            ax.set_facecolor(plt.rcParams["axes.facecolor"])
            ax.set_axis_on()
            ax.set_title("")
            ax.set_xlabel("")
            ax.set_ylabel("")
        for legend in list(fig.legends):
            legend.remove()
        return fig, axes
    fig, axes = _new_panel_grid(blocks, len(families), cols, legend_rows)
    if reuse:
        _GRIDS[shape] = fig, axes
    return fig, axes


def _new_panel_grid(blocks: int, families: int, cols: int, legend_rows: int):
    block = families * AXES_INCHES[1] + (families - 1) * GAPS["family"]
    width = GAPS["left"] + cols * AXES_INCHES[0] + (cols - 1) * GAPS["column"] + GAPS["right"]
    height = (GAPS["top"] + blocks * block + (blocks - 1) * GAPS["block"] + GAPS["bottom"]
              + legend_rows * GAPS["legend row"])
    fig = Figure(figsize=(width, height))  # outside pyplot: a kept figure is never shown or listed by it
    axes = np.empty((blocks * families, cols), dtype=object)
    for b in range(blocks):
        for k in range(families):
            top = GAPS["top"] + b * (block + GAPS["block"]) + k * (AXES_INCHES[1] + GAPS["family"])
            for c in range(cols):
                left = GAPS["left"] + c * (AXES_INCHES[0] + GAPS["column"])
                axes[b * families + k, c] = fig.add_axes((left / width, 1 - (top + AXES_INCHES[1]) / height,
                                                          AXES_INCHES[0] / width, AXES_INCHES[1] / height))
    return fig, axes


def family_label(family: str, metrics: list[str]) -> str:
    """A panel's y label: the metric in words with its direction when alone ('ZRF ↑'), else the
    family ('accuracy'; the legend names each metric)."""
    if len(metrics) == 1:
        unit = {"loss": " (nats)", "forget_quality": " (p)"}.get(family, "")
        return metric_label(metrics[0]) + unit
    return FAMILY_WORDS.get(family, family)


def endpoints_label(rows: pd.DataFrame, pair: tuple[str, str]) -> str:
    """The t axis named by its endpoints: 't = 0: GA seed 0 → t = 1: GA seed 1'."""
    return f"t = 0: {_endpoint_name(rows, pair[0], '1')} → t = 1: {_endpoint_name(rows, pair[1], '2')}"


def _endpoint_name(rows: pd.DataFrame, method: str, side: str) -> str:
    """'GA', with its optimiser / curriculum variant when not the plain one, and its seed(s)."""
    words = [method.upper()]
    for column, plain in ((f"optimizer_{side}", "fo"), (f"curriculum_{side}", "none")):
        values = rows[column].dropna().unique() if column in rows.columns else []
        words += [str(v).upper() for v in values if v != plain]
    column = f"seed_{side}" if f"seed_{side}" in rows.columns and rows[f"seed_{side}"].notna().any() else "seed"
    seeds = sorted(int(s) for s in rows[column].dropna().unique()) if column in rows.columns else []
    if seeds:
        words.append(f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ",".join(map(str, seeds)))
    return " ".join(words)


def _panel_rows(frame: pd.DataFrame, ratio: float, pair: tuple[str, str]) -> pd.DataFrame:
    return frame[(frame["ratio"] == ratio) & (frame["method_1"] == pair[0]) & (frame["method_2"] == pair[1])]


BAND_ALPHA = 0.18  # the mean ± std band over seeds


def curve_stats(results: pd.DataFrame, metrics: list[str]) -> dict:
    """(ratio, method_1, method_2) -> {curve: (t, means, stds)} over the seeds that finished, one
    grouping for a whole figure: ``means`` and ``stds`` are (points, metrics) arrays, the std the
    sample std (NaN with one seed)."""
    ok = results[results["status"] == "ok"]
    stats = ok.groupby(["ratio", "method_1", "method_2", "curve", "t"])[metrics].agg(["mean", "std"])
    means, stds = [(m, "mean") for m in metrics], [(m, "std") for m in metrics]
    found: dict = {}
    for (ratio, m1, m2, curve), along in stats.groupby(level=[0, 1, 2, 3], sort=False):
        found.setdefault((ratio, m1, m2), {})[curve] = (along.index.get_level_values("t").to_numpy(float),
                                                        along[means].to_numpy(float), along[stds].to_numpy(float))
    return found


def _draw_panel(ax, curves: dict, reference: dict, columns: list[int], metrics: list[str], family: str,
                limits: dict) -> None:
    """Seed-mean metrics of one family (``metrics[c]`` for c in ``columns``) along t, from
    ``curve_stats``, with a mean ± std band when there are several seeds; the retrained model's
    values dotted."""
    floor = FQ_FLOOR if family == "forget_quality" else -np.inf
    for curve in ordered_curves(curves):
        t, means, stds = curves[curve]
        for c in columns:
            colour = metric_colour(metrics[c])
            ax.plot(t, np.maximum(means[:, c], floor), CURVE_STYLES.get(curve, "-."), color=colour, lw=1.3)
            if np.isfinite(stds[:, c]).any():  # several seeds
                low, high = (np.maximum(means[:, c] + sign * stds[:, c], floor) for sign in (-1, 1))
                ax.fill_between(t, low, high, color=colour, alpha=BAND_ALPHA, lw=0)
    for metric in (metrics[c] for c in columns):
        if metric in reference:
            ax.axhline(max(reference[metric], floor), color=metric_colour(metric), ls=":", lw=1.1)
    ax.set_xlim(0, 1)
    ax.set_xticks(T_TICKS, [f"{t:g}" for t in T_TICKS])  # fixed: no tick search in a grid's hundreds of panels
    ax.tick_params(labelsize=7)
    if family == "loss":
        if ax.get_yscale() != "symlog":  # a reused panel has it already: setting it again costs its ticks
            ax.set_yscale("symlog", linthresh=LOSS_LINTHRESH)
        ax.set_ylim(*limits["loss"])
        ax.set_yticks([v for v in LOSS_TICKS if limits["loss"][0] <= v <= limits["loss"][1]])
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.yaxis.set_minor_locator(NullLocator())
    elif family == "forget_quality":
        if ax.get_yscale() != "log":
            ax.set_yscale("log")
        ax.axhline(FQ_THRESHOLD, color="#666666", ls="-.", lw=0.9)
        low, high = limits["forget_quality"]
        ax.set_ylim(low, high)
        decades = np.arange(np.floor(np.log10(low)), 1)
        ax.set_yticks(10.0 ** decades[:: max(1, -(-len(decades) // 5))])  # at most 5 labelled decades
        ax.yaxis.set_minor_locator(NullLocator())
    else:
        low, high = limits.get(family, limits["bounded"])
        ax.set_ylim(low, high)
        ax.set_yticks(ticks_within(low, high))


T_TICKS = (0, 0.5, 1)


def ticks_within(low: float, high: float) -> np.ndarray:
    """Two to four round ticks between ``low`` and ``high`` (a bounded metric's axis: 0, 0.5, 1)."""
    for step in (0.25, 0.5, 1, 2, 5, 10, 25, 50, 100):
        ticks = np.arange(np.ceil(low / step), np.floor(high / step) + 1) * step
        if len(ticks) <= 4:
            return ticks
    return np.linspace(low, high, 3)


def _empty_panel(ax, text: str, failed: bool) -> None:
    ax.set_facecolor(FAILED_COLOUR if failed else MISSING_COLOUR)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11,
            color="#8b0000" if failed else "#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _axis_limits(results: pd.DataFrame, metrics: list[str], references: list[dict] = ()) -> dict:
    """y ranges shared by every panel of a family, the retrained model's values (``references``)
    included: at least [0, 1] for bounded metrics, losses from 0, Forget Quality from its
    smallest positive value (log axis) to 1."""
    ok = pd.concat([results[results["status"] == "ok"], pd.DataFrame(list(references))])

    def values(family):
        return ok[[m for m in metrics if family_of(m) == family]].to_numpy(float)

    limits = {}
    for family in ("accuracy", "score"):
        found = values(family)
        low = min(0.0, np.nanmin(found)) if np.isfinite(found).any() else 0.0
        high = max(1.0, np.nanmax(found)) if np.isfinite(found).any() else 1.0
        pad = 0.04 * (high - low)
        limits[family] = (low - pad, high + pad)
    limits["bounded"] = limits["score"]
    losses = values("loss")
    loss_high = np.nanmax(losses) if np.isfinite(losses).any() else 1.0
    loss_low = np.nanmin(losses) if np.isfinite(losses).any() else 0.0
    # from 0, unless every loss is on the log part of the axis (TOFU: 4-12 nats): then from below the lowest
    limits["loss"] = (0.0 if loss_low < 2 * LOSS_LINTHRESH else loss_low / 1.5, max(loss_high, 1e-3) * 1.15)
    quality = values("forget_quality")
    positive = quality[np.isfinite(quality) & (quality > 0)]
    low = max(FQ_FLOOR, positive.min() / 3) if positive.size else 1e-3
    limits["forget_quality"] = (min(low, FQ_THRESHOLD / 3), 1.5)
    return limits


def _seed_note(rows: pd.DataFrame) -> str:
    """' (mean of 3 seeds)' when several seeds exist, counting the seeds that finished."""
    seeds = rows["seed"].nunique()
    if seeds <= 1:
        return ""
    finished = rows.loc[rows["status"] == "ok", "seed"].nunique()
    return f" (mean of {finished}/{seeds} seeds)" if finished < seeds else f" (mean of {seeds} seeds)"


def _verdict_line(verdicts: pd.DataFrame) -> str:
    """'linear: MCU, Bezier: barrier' for one panel."""
    return ", ".join(f"{CURVE_NAMES.get(curve, curve)}: "
                     f"{panel_verdict(verdicts.loc[verdicts['curve'] == curve, 'verdict'])}"
                     for curve in ordered_curves(verdicts["curve"]))


def _legend_handles(curves: list[str], metrics: list[str], with_reference: bool, with_fq: bool) -> list:
    handles = [Line2D([], [], color=metric_colour(m), lw=2, label=metric_label(m)) for m in metrics]
    handles += [Line2D([], [], color="black", ls=CURVE_STYLES.get(c, "-."), label=f"{CURVE_NAMES.get(c, c)} curve")
                for c in curves]
    if with_reference:
        handles.append(Line2D([], [], color="grey", ls=":", label="retrained model (metric's colour)"))
    if with_fq:
        handles.append(Line2D([], [], color="#666666", ls="-.", label=f"Forget Quality p = {FQ_THRESHOLD:g}"))
    return handles


# ---------------------------------------------------------------------- barrier summary of one task
def barrier_figure(path: str, task: str, verdicts: pd.DataFrame) -> None:
    """Draw barrier_figure_of into ``path`` (PNG) and its PDF."""
    save(barrier_figure_of(task, verdicts), path)


def barrier_figure_of(task: str, verdicts: pd.DataFrame):
    """Heat maps of the retain barrier B_r and forget cliff B_f (mean over seeds); a green ✓ and
    frame where the mean is within the tolerance, a grey × where the cell failed."""
    table = verdicts.groupby(["setting", "method_1", "method_2", "ratio", "curve"])[
        ["retain_barrier", "forget_barrier", "tolerance"]].mean()
    rows = [(setting, *pair) for setting in ordered_settings(verdicts["setting"])
            for pair in method_pairs(verdicts[verdicts["setting"] == setting])]
    columns = [(ratio, curve) for ratio in sorted(verdicts["ratio"].unique())
               for curve in ordered_curves(verdicts["curve"])]
    fig, axes = plt.subplots(1, 2, layout="constrained", sharey=True,
                             figsize=(2 * (1.5 + 0.75 * len(columns)) + 2, 1.8 + 0.3 * len(rows)))
    titles = {"retain_barrier": "retain barrier $B_r$ (retain loss above chord)",
              "forget_barrier": "forget cliff $B_f$ (forget loss below chord)"}
    cells = table.reindex(pd.MultiIndex.from_tuples([row + column for row in rows for column in columns],
                                                    names=table.index.names))  # NaN where a cell has no row
    tolerance = cells["tolerance"].to_numpy(float).reshape(len(rows), len(columns))
    for ax, (quantity, title) in zip(axes, titles.items()):
        grid = cells[quantity].to_numpy(float).reshape(len(rows), len(columns))
        _heat_map(fig, ax, grid, grid <= tolerance)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(columns)), [f"{r:g} % {CURVE_NAMES.get(c, c)}" for r, c in columns], rotation=45,
                      ha="right", fontsize=8)
    axes[0].set_yticks(range(len(rows)), [f"{s}  {pair_label(m1, m2)}" for s, m1, m2 in rows], fontsize=8)
    fig.suptitle(f"{task}: barriers per setting and method pair, mean over seeds, in nats\n"
                 f"(green ✓ and frame: within the loss tolerance; grey ×: failed)", fontsize=11)
    return fig


def _heat_map(fig, ax, grid: np.ndarray, holds: np.ndarray, missing: str = "×", notes=None, cax=None) -> None:
    """Red where a barrier stands (symlog colours, so small and huge barriers both read); a green
    ✓ and frame on the cells where ``holds``; ``notes``: a word under a cell's value (what breaks MCU);
    the colour bar in ``cax`` (None: taken from beside ``ax``)."""
    top = np.nanmax(grid) if np.isfinite(grid).any() else 1.0
    norm = SymLogNorm(linthresh=0.01, vmin=0.0, vmax=max(top, 0.02))
    cmap = plt.get_cmap("Reds").with_extremes(bad="#cccccc")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    dark = np.ma.filled(norm(np.ma.masked_invalid(grid)), 0.0) > 0.6  # white text on dark cells; one call for all
    # the marks sit inside their cells: left out of the layout's search (a grid's heat map has hundreds)
    mark = {"ha": "center", "va": "center", "in_layout": False}
    frames = []
    for (i, j), value in np.ndenumerate(grid):
        if np.isnan(value):
            ax.text(j, i, missing, fontsize=8, color="#555555", **mark)
        elif holds[i, j]:
            frames.append(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9))
            ax.text(j, i, f"✓ {value:.2g}", fontsize=7.5, color=HOLDS_COLOUR, fontweight="bold", **mark)
        else:
            note = f"\n{notes[i][j]}" if notes is not None and notes[i][j] else ""
            ax.text(j, i, f"{value:.2g}{note}", fontsize=7, color="white" if dark[i, j] else "black", **mark)
    if frames:  # one collection: hundreds of patches each cost their own transforms
        ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor=HOLDS_COLOUR, linewidth=2))
    if cax is None:
        fig.colorbar(image, ax=ax, shrink=0.8)
    else:
        fig.colorbar(image, cax=cax)


# ---------------------------------------------------------------------- paper Figure 3: method × method
def is_ordered_setting(setting: str, verdicts: pd.DataFrame) -> bool:
    """A Met-type setting: ordered pairs of different methods."""
    if setting in SETTINGS_TABLE:
        return SETTINGS_TABLE[setting][0] == "ordered"
    return bool((verdicts["method_1"] != verdicts["method_2"]).any())


def mcu_matrix_figure(path: str, task: str, setting: str, verdicts: pd.DataFrame) -> None:
    """Draw mcu_matrix_figure_of into ``path`` (PNG) and its PDF."""
    save(mcu_matrix_figure_of(task, setting, verdicts), path)


def mcu_matrix_figure_of(task: str, setting: str, verdicts: pd.DataFrame):
    """The paper's Figure 3 for one Met-type setting: a row per forget ratio, a column per curve
    kind, each panel a method × method matrix of the retain barrier B_r (mean over seeds), ✓ where
    MCU holds (no barrier and no cliff in every seed). Linear curves are symmetric when both
    endpoints share a variant (the matrix is mirrored to fill it); Bezier curves are not: row =
    the method whose objective trained the bend (the first endpoint), column = the other."""
    rows = verdicts[verdicts["curve"].notna() & (verdicts["curve"] != NO_CURVE)]  # NO_CURVE: failed before any
    methods = sorted(set(rows["method_1"]) | set(rows["method_2"]))
    ratios, curves = sorted(rows["ratio"].unique()), ordered_curves(rows["curve"])
    symmetric = setting not in SETTINGS_TABLE or SETTINGS_TABLE[setting][1] == SETTINGS_TABLE[setting][2]
    fig, axes, bars = _matrix_grid(len(ratios), len(curves), 0.55 * len(methods) + 0.3)
    ok = rows.assign(holds=(rows["verdict"] == "MCU").astype(float)).where(rows["status"] == "ok")
    keys = [rows["ratio"], rows["curve"], rows["method_1"], rows["method_2"]]
    means = ok.groupby(keys)[["retain_barrier", "holds"]].mean()
    words = rows.groupby(keys)["verdict"].agg(panel_verdict)  # 'cliff', 'barrier + cliff', 'MCU 1/3'...
    for i, ratio in enumerate(ratios):
        for j, curve in enumerate(curves):
            grid, holds = (np.full((len(methods), len(methods)), np.nan) for _ in range(2))
            notes = np.full((len(methods), len(methods)), "", dtype=object)
            for a, m1 in enumerate(methods):
                for b, m2 in enumerate(methods):
                    if (ratio, curve, m1, m2) in means.index:
                        grid[a, b], holds[a, b] = means.loc[(ratio, curve, m1, m2)]
                        notes[a, b] = words.loc[(ratio, curve, m1, m2)]
            if curve == "linear" and symmetric:  # the same straight line either way: fill the mirror
                mirror = np.isnan(grid)
                grid, holds, notes = (np.where(mirror, x.T, x) for x in (grid, holds, notes))
            ax = axes[i, j]
            _heat_map(fig, ax, grid, holds == 1.0, missing="", notes=notes, cax=bars[i, j])
            ax.set_xticks(range(len(methods)), [m.upper() for m in methods], fontsize=8)
            ax.set_yticks(range(len(methods)), [m.upper() for m in methods], fontsize=8)
            shape = ("symmetric" if symmetric else "row: the t = 0 endpoint") if curve == "linear" \
                else "row: the method that trained it"
            ax.set_title(f"forget {ratio:g} %, {CURVE_NAMES.get(curve, curve)} curve\n({shape})", fontsize=8.5)
            ax.set_ylabel("from (t = 0)", fontsize=8)
            ax.set_xlabel("to (t = 1)", fontsize=8)
    fig.suptitle(f"{task} · {setting}: retain barrier $B_r$ (nats) between unlearning methods\n"
                 f"mean over seeds; "
                 f"green ✓ and frame: MCU holds in every seed; grey: same method, not run or failed", fontsize=10,
                 y=1 - 0.1 / fig.get_figheight(), va="top")
    return fig


MATRIX_GAPS = {"left": 0.85, "bar gap": 0.1, "bar": 0.12, "bar labels": 0.55, "column": 0.25, "top": 0.75,
               "title": 0.5, "below": 0.5, "min width": 8.0}  # inches


def _matrix_grid(rows: int, cols: int, square: float):
    """A figure of ``rows`` x ``cols`` square heat maps of side ``square`` inches, each with its colour
    bar on its right, placed by hand (as _panel_grid: no layout search); (figure, axes, colour-bar axes)."""
    g = MATRIX_GAPS
    cell = g["left"] + square + g["bar gap"] + g["bar"] + g["bar labels"]
    width = max(cols * cell + (cols - 1) * g["column"], g["min width"])
    height = g["top"] + rows * (g["title"] + square + g["below"])
    fig = plt.figure(figsize=(width, height))
    axes, bars = (np.empty((rows, cols), dtype=object) for _ in range(2))
    first = (width - cols * cell - (cols - 1) * g["column"]) / 2  # columns centred
    for i in range(rows):
        bottom = height - g["top"] - i * (g["title"] + square + g["below"]) - g["title"] - square
        for j in range(cols):
            left = first + j * (cell + g["column"]) + g["left"]
            axes[i, j] = fig.add_axes((left / width, bottom / height, square / width, square / height))
            bars[i, j] = fig.add_axes(((left + square + g["bar gap"]) / width, bottom / height, g["bar"] / width,
                                       square / height))
    return fig, axes, bars


# ---------------------------------------------------------------------- pathway unlearning
PATHWAY_PANEL = (3.3, 2.8)  # width, height of one bar panel (room for the rotated metric names)
PATHWAY_COLOURS = {"original": "#0072b2", "source": "#d55e00", "pathway": "#009e73", "retrained": "#999999"}


def pathway_figure(path: str, task: str, table: pd.DataFrame, curves: pd.DataFrame) -> None:
    """Draw pathway_figure_of into ``path`` (PNG) and its PDF."""
    save(pathway_figure_of(task, table, curves), path)


def pathway_figure_of(task: str, table: pd.DataFrame, curves: pd.DataFrame):
    """A row per forget ratio. A column per source method: bars of every bounded metric for the
    original, the source endpoint, the pathway model at t* and the retrained model, gaps in the title. Last
    column: the mean gap to the retrained model along each pathway curve, t* marked."""
    ratios, sources = sorted(table["ratio (%)"].unique()), sorted(table["source"].unique())
    metrics = [c for c in table.columns if c not in PATHWAY_LABELS and not is_loss(c)]
    fig, axes = plt.subplots(len(ratios), len(sources) + 1, squeeze=False,
                             figsize=(max(PATHWAY_PANEL[0], 0.5 * len(metrics)) * (len(sources) + 1) + 0.5,
                                      PATHWAY_PANEL[1] * len(ratios) + 1.2))
    width = 0.8 / len(PATHWAY_MODELS)
    colours = OKABE_ITO
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
            ax.set_xticks(np.arange(len(metrics)), [metric_label(m) for m in metrics], rotation=45, ha="right",
                          fontsize=7)
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
    fig.suptitle(f"{task}: pathway unlearning vs its source endpoint and the retrained model\n"
                 f"(gap = mean |metric - retrained| on the gap metrics, out of sample: t* is chosen without the "
                 f"retrained model; means over seeds)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the legend below the panels
    return fig
