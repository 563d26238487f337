"""The metric registry: every metric a task emits, declared once, with its meaning and source.

An entry says which task families emit the metric, which way is better for an unlearned model,
the values it can take, its unit, which tolerance family decides its barriers (``spec.Tolerances``),
how figures name it, and where it comes from (paper and reference code). Tasks list the names they
emit and take their directions from here; the result tables and their data dictionary, the barrier
verdicts and the report's axes and legends read it. Plain Python: no Ray, no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

DIRECTIONS = {"max": +1, "min": -1}  # which way is better after unlearning -> the sign barriers use
TASK_FAMILIES = ("classification", "tofu", "both")  # "both": every task emits it
FAMILIES = ("loss", "accuracy", "score", "forget_quality")  # tolerance families: the fields of spec.Tolerances
INF = math.inf


@dataclass(frozen=True)
class Metric:
    name: str  # the column of the result tables
    label: str  # in words, as figures name it: "forget accuracy"
    tasks: str  # classification | tofu | both: the task families that emit it
    direction: str  # max | min: which way is better for an unlearned model (the chord deviation's sign)
    bounds: tuple  # (lowest, highest) value it can take; INF where unbounded
    family: str  # loss | accuracy | score | forget_quality: which tolerance decides its barriers
    unit: str
    definition: str  # one line: what the number is
    source: str  # paper and reference code it follows
    tolerance_scale: float = 1.0  # the family's tolerance in this metric's unit (PrivLeak is in percent: 100)

    @property
    def sign(self) -> int:
        """+1: higher is better after unlearning; -1: lower is."""
        return DIRECTIONS[self.direction]

    def check(self) -> None:
        """Raise ValueError naming the field of an incomplete or inconsistent entry."""
        for field, value, allowed in (("tasks", self.tasks, TASK_FAMILIES), ("direction", self.direction, DIRECTIONS),
                                      ("family", self.family, FAMILIES)):
            if value not in allowed:
                raise ValueError(f"metric {self.name!r}: {field} {value!r}; allowed: {', '.join(allowed)}")
        low, high = self.bounds
        if not low < high:
            raise ValueError(f"metric {self.name!r}: bounds {self.bounds}; expected (lowest, highest), lowest < highest")
        for field in ("label", "unit", "definition", "source"):
            if not getattr(self, field).strip():
                raise ValueError(f"metric {self.name!r}: {field} is empty")
        if not self.tolerance_scale > 0:
            raise ValueError(f"metric {self.name!r}: tolerance_scale {self.tolerance_scale}; expected > 0")


# ----------------------------------------------------------------------------- sources
MU_BENCH = "MU-Bench (Cheng & Amiri 2024): CLU-UML/MU-Bench evaluation.py"
TOFU = "TOFU (Maini et al. 2024): locuslab/tofu evaluate_util.py, aggregate_eval_stat.py"
OPEN_UNLEARNING = "locuslab/open-unlearning (d3d7cf9)"
TOFU_SPLITS = {"forget": ("forget", "the forget authors' questions"),
               "retain": ("retain", "the retain authors' questions"),
               "real_authors": ("real authors", "questions about real authors"),
               "world_facts": ("world facts", "world-fact questions")}
FRACTION = "fraction (0-1)"


def _accuracy(split: str, text: str, direction: str) -> Metric:
    return Metric(f"acc_{split}", f"{split} accuracy", "classification", direction, (0.0, 1.0), "accuracy", FRACTION,
                  f"accuracy on {text}", MU_BENCH)


def _loss(split: str, condition: str, direction: str) -> Metric:
    d = {"retain": "Dr", "forget": "Df"}[split]
    return Metric(f"loss_{split}", f"{split} loss", "both", direction, (0.0, INF), "loss", "nats",
                  f"L({d}), the MCU {condition} condition: mean cross-entropy on {d} "
                  "(TOFU: answer-token NLL, mean over tokens then questions)",
                  f"MCU paper (Cheng & Amiri 2025) Eq. 3/4; {MU_BENCH}; {TOFU}")


def _tofu_split(stem: str, words: str, unit: str, direction, meaning) -> list[Metric]:
    """One TOFU statistic on each evaluation split; ``direction`` and ``meaning`` map a split to its own."""
    return [Metric(f"{stem}_{split}", f"{split_words} {words}", "tofu", direction(split), (0.0, 1.0), "score", unit,
                   meaning(split, text), TOFU)
            for split, (split_words, text) in TOFU_SPLITS.items()]


METRICS = {m.name: m for m in [
    _accuracy("test", "the test split", "max"),
    _accuracy("retain", "the retain set Dr", "max"),
    _accuracy("forget", "the forget set Df", "min"),  # forgetting means the forget set is no longer fit
    Metric("zrf", "ZRF", "classification", "max", (0.0, 1.0), "score", "score (0-1)",
           "Zero Retrain Forgetting on Df (Chundawat et al. 2023): 1 - mean Jensen-Shannon divergence to a randomly "
           "initialised network's predictions; 1 = as uninformed as that network",
           "Chundawat et al. 2023 (AAAI): vikram2000b/bad-teaching-unlearning metrics.py:5-25"),
    _loss("retain", "retain", "min"),
    _loss("forget", "forget", "max"),
    Metric("forget_quality", "Forget Quality", "tofu", "max", (0.0, 1.0), "forget_quality", "p-value (0-1)",
           "TOFU Forget Quality: KS-test p-value between this model's and the retrained (retain-only) model's truth "
           "ratios on the forget set; high = indistinguishable", TOFU),
    Metric("model_utility", "Model Utility", "tofu", "max", (0.0, 1.0), "score", "score (0-1)",
           "TOFU Model Utility: harmonic mean of probability, ROUGE-L recall and truth ratio on retain, real authors, "
           "world facts", TOFU),
    *_tofu_split("rouge", "ROUGE-L", "recall (0-1)", lambda s: "min" if s == "forget" else "max",
                 lambda s, text: f"ROUGE-L recall of greedy answers to {text}"),
    *_tofu_split("prob", "probability", "probability (0-1)", lambda s: "min" if s == "forget" else "max",
                 lambda s, text: f"probability of the true answer to {text}, "
                                 + ("exp(-mean token NLL)" if s in ("forget", "retain")
                                    else "normalised over it and its perturbed answers")),
    # forget: mean min(r, 1/r), 1 = indifferent between the true and the perturbed answers
    *_tofu_split("truth_ratio", "truth ratio", "ratio (0-1)", lambda s: "max",
                 lambda s, text: f"TOFU truth ratio on {text}: "
                                 + ("mean min(r, 1/r)" if s == "forget" else "mean max(0, 1 - r)")
                                 + ", r = exp(NLL(true or paraphrased answer) - mean NLL(perturbed answers)), "
                                   "NLLs averaged over tokens"),
    # ------------------------------------------------------------------ privacy: membership inference
    Metric("mia_efficacy", "MIA-efficacy", "classification", "max", (0.0, 1.0), "score", FRACTION,
           "SalUn's MIA-efficacy: the fraction of Df that an RBF SVC (C 3), fitted on the true-class confidence of "
           "Dr's first |test| rows (members) and of the test split (non-members), calls non-members; "
           "1 = nothing of Df looks trained on",
           "SalUn (Fan et al. 2024) and Jia et al. 2023 App. C.3: OPTML-Group/Unlearn-Saliency "
           "Classification/evaluation/SVC_MIA.py:53-82,85-150 (the 'confidence' attack, README.md:37), "
           "main_random.py:161-185"),
    Metric("mia_loss", "loss-attack AUC", "both", "min", (0.0, 1.0), "score", "ROC AUC (0-1)",
           "ROC AUC of the loss attack telling Df from unseen rows (classification: the test split; TOFU: the held-out "
           "authors holdoutXX) by per-example loss (TOFU: answer-token mean NLL): 1 = Df fully exposed, 0.5 = "
           "indistinguishable (a model that never saw Df), below 0.5 = Df less familiar than unseen data",
           f"Yeom et al. 2018 (LOSS attack); {OPEN_UNLEARNING} src/evals/metrics/mia/loss.py, "
           "mia/utils.py:30-70 (forget labelled 0, held-out 1, AUC of the loss)"),
    Metric("mia_min_k", "Min-K% attack AUC", "tofu", "min", (0.0, 1.0), "score", "ROC AUC (0-1)",
           "ROC AUC of the Min-K% Prob attack (k 0.4) telling the forget set from the held-out authors: score = minus "
           "the mean of an answer's lowest 40 % token log-probabilities (its last token left out); 0.5 = "
           "indistinguishable",
           f"Shi et al. 2024 (Min-K% Prob, arXiv 2310.16789); {OPEN_UNLEARNING} src/evals/metrics/mia/min_k.py, "
           "mia/utils.py:30-70, configs/eval/tofu_metrics/mia_min_k.yaml (k 0.4)"),
    Metric("privleak", "PrivLeak", "tofu", "max", (-100.0, INF), "score", "percent",
           "MUSE's PrivLeak: 100 ((1 - AUC) - (1 - AUC_r)) / (1 - AUC_r) with AUC = mia_min_k of this model and "
           "AUC_r of the retrained model; 0 = the retrained model's exposure, -100 = fully exposed, > 0 over-unlearned",
           f"MUSE (Shi et al. 2024, arXiv 2407.06460); {OPEN_UNLEARNING} src/evals/metrics/privacy.py:35-52, "
           "configs/eval/tofu_metrics/privleak.yaml", tolerance_scale=100.0),
]}
for _metric in METRICS.values():
    _metric.check()


def metric(name: str) -> Metric:
    """The registry entry of ``name``; KeyError naming the registry when it has none."""
    if name not in METRICS:
        raise KeyError(f"metric {name!r} has no entry in mcu_ray.metrics.METRICS")
    return METRICS[name]


def direction(name: str) -> int:
    """+1: higher is better after unlearning; -1: lower is."""
    return metric(name).sign


def directions(names) -> dict:
    """{name: +1 or -1} of the metrics ``names``, in their order: what a task declares it emits."""
    return {name: direction(name) for name in names}
