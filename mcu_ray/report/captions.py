"""What each figure of the report shows and how to read it: the caption under it on the page.

One function per figure kind. A caption names the axes, which way is better, what a barrier
and a cliff look like in that figure, and what the marks mean, in the words the figures use.
"""
from __future__ import annotations

from mcu_ray.spec import Tolerances


def _spread(seeds: int) -> str:
    if seeds > 1:
        return (f"Lines are the mean over the {seeds} seeds; the shaded band around a line is mean ± one "
                f"standard deviation over the seeds (wide band: the seeds disagree).")
    return "One seed: no spread band."


def setting_caption(task: str, setting: str, tolerances: Tolerances, seeds: int) -> str:
    return (f"{task} · {setting}: every metric along the curves between two unlearned models. "
            f"A block of rows per forget ratio, a column per method pair (its title gives the pair and each "
            f"curve's verdict). x axis: t, from the t = 0 endpoint to the t = 1 endpoint (both named under the "
            f"column). y axis: one panel per metric family (accuracy, score, loss, Forget Quality); the label or "
            f"legend gives each metric's better direction after unlearning (↑ higher is better, ↓ lower is). "
            f"Solid lines: the linear curve; dashed: the Bezier curve; dotted horizontal lines: the model "
            f"retrained without the forget set (the target). Read a barrier as the retain loss (↓) rising above "
            f"the straight line between its two end values, and a cliff as the forget loss (↑) dropping below "
            f"it; mode connectivity (MCU) holds when neither exceeds {tolerances.loss:g} nats. A point above "
            f"both endpoints on ↑ metrics and below them on ↓ ones beats both endpoints. Forget Quality is on a "
            f"log axis: below the dash-dot p = {tolerances.forget_quality:g} line the model is told apart from the "
            f"retrained one. {_spread(seeds)} A shaded panel: the cell failed or was not run.")


def matrix_caption(task: str, setting: str) -> str:
    return (f"{task} · {setting} (the paper's Figure 3): the retain barrier B_r in nats between each pair of "
            f"unlearning methods, a row of matrices per forget ratio and one per curve kind. Row: the method of "
            f"the t = 0 endpoint (Bezier: the method whose objective trained the bend); column: the method at "
            f"t = 1. Lower is better: white and pale cells are pairs joined without a barrier (similar "
            f"methods), dark red a high barrier (the symlog colour scale reads small and large barriers alike). "
            f"A green ✓ and frame: MCU holds in every seed; a word under a value says what breaks MCU "
            f"(barrier: retain side, cliff: forget side). Mean over seeds; grey: same method, not run or failed.")


def barrier_caption(task: str, tolerances: Tolerances) -> str:
    return (f"{task}: the retain barrier B_r (left: how far the retain loss rises above the chord between the "
            f"endpoints) and the forget cliff B_f (right: how far the forget loss falls below it), in nats, mean "
            f"over seeds. Rows: setting and method pair; columns: forget ratio and curve kind. Lower is better; "
            f"darker red = a higher barrier or deeper cliff. A green ✓ and frame: within the loss tolerance "
            f"({tolerances.loss:g} nats); grey ×: the cell failed or was not run.")


def pathway_caption(task: str) -> str:
    return (f"{task}: pathway unlearning. Per forget ratio (rows) and source method (columns): bars of every "
            f"bounded metric for the original, the source endpoint, the pathway model at t* and the retrained "
            f"model (tick labels carry ↑ / ↓, the better direction); the title gives the mean gap to the "
            f"retrained model, source → pathway (lower is better). Last column: that gap along each pathway "
            f"curve, t = 0 the original and t = 1 the source; the dotted line marks t*, chosen without the "
            f"retrained model. Means over seeds.")


def _better(direction: str) -> str:
    return "lower is better" if direction == "min" else "higher is better"


def search_history_caption(task: str, method: str, objectives: list, pruned_valued: int, pruned_bare: int) -> str:
    """``objectives``: (name in words, 'min' | 'max'); ``pruned_*``: pruned trials with / without a value."""
    named = "; ".join(f"{name} ({_better(d)})" for name, d in objectives)
    if len(objectives) == 1:
        panels = (f"y axis: the objective, {named}, as the search scored each trial from its models' metrics on the "
                  f"validation view at the searched forget ratios. Blue dots: trials that completed; the black step "
                  f"line: the best value found so far (still falling at the right edge: more trials may find better).")
    else:
        panels = (f"One panel per objective: {named}, each as the search scored it from the validation view at the "
                  f"searched forget ratios. Blue dots: trials that completed. No best-so-far line: with several "
                  f"objectives no trial need be best on all; the Pareto figure shows the trade-off.")
    prune = (f" Grey crosses: {pruned_valued} trial(s) stopped early (pruned), at the value reached on the ratios they "
             f"finished; not comparable with complete trials, never counted as best." if pruned_valued else "")
    prune += f" Grey ticks on the x axis: {pruned_bare} pruned trial(s) without a value." if pruned_bare else ""
    return (f"{task} · {method.upper()}: the hyper-parameter search, trial by trial. x axis: Optuna's trial number, "
            f"in the order trials started. {panels}{prune or ' No trial was pruned.'} Orange square: the trial run "
            f"with the defaults; red star: the chosen trial: how far apart they are is what searching gained on the "
            f"validation view. The tables below give the chosen endpoints' test-side values, which the search never "
            f"saw.")


def search_pareto_caption(task: str, method: str, objectives: list, rule: str) -> str:
    """``objectives``: (name in words, 'min' | 'max'), the first two drawn."""
    (x, dx), (y, dy) = objectives[:2]
    corner = f"{'bottom' if dy == 'min' else 'top'} {'left' if dx == 'min' else 'right'}"
    many = (f" The front is over all {len(objectives)} objectives and only the first two are drawn, so a front point "
            f"may look dominated here." if len(objectives) > 2 else "")
    return (f"{task} · {method.upper()}: every complete trial of the search on {x} (x axis, {_better(dx)}) and {y} "
            f"(y axis, {_better(dy)}), both on the validation view; better is toward the {corner} corner. Filled "
            f"blue, labelled with its trial number: the Pareto front, the trials that no other trial dominates (is "
            f"at least as good on every objective and better on one); the blue staircase bounds what they "
            f"dominate. Hollow grey: dominated trials.{many} Orange square: the defaults' trial; red star: the chosen "
            f"trial ({rule}).")
