"""TOFU's metrics (Maini et al. 2024), exactly as its aggregation code defines them.

Inputs are per-example answer losses already normalised by the answer's token count
(``loss = -log p(answer | question) / |answer|``), so ``exp(-loss)`` is the per-token
geometric-mean probability TOFU reports. Pure NumPy/SciPy; no model here.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import hmean, ks_2samp


def truth_ratios(paraphrased_loss, perturbed_losses) -> np.ndarray:
    """r = exp(loss(paraphrased or true answer) - mean_j loss(perturbed_j)), per example.

    ``perturbed_losses`` has shape (examples, perturbations). r < 1 means the model
    prefers the correct answer over the perturbed ones.
    """
    paraphrased = np.asarray(paraphrased_loss, float)
    perturbed = np.asarray(perturbed_losses, float).mean(axis=-1)
    return np.exp(paraphrased - perturbed)


def truth_ratio_stat(ratios, forget: bool) -> float:
    """Forget set: mean(min(r, 1/r)); other sets: mean(max(0, 1 - r))."""
    r = np.asarray(ratios, float)
    if forget:
        return float(np.mean(np.minimum(r, 1.0 / r)))
    return float(np.mean(np.maximum(0.0, 1.0 - r)))


def probabilities(answer_loss) -> np.ndarray:
    """Per-token probability of the true answer, exp(-loss), per example (forget and retain sets)."""
    return np.exp(-np.asarray(answer_loss, float))


def probability(answer_loss) -> float:
    """Mean per-token probability of the true answer, exp(-loss) (forget and retain sets)."""
    return float(np.mean(probabilities(answer_loss)))


def normalised_probabilities(answer_loss, perturbed_losses) -> np.ndarray:
    """Real authors / world facts: p(true) / (p(true) + sum_j p(perturbed_j)), per example."""
    true_p = np.exp(-np.asarray(answer_loss, float))  # (n,)
    false_p = np.exp(-np.asarray(perturbed_losses, float))  # (n, k)
    return true_p / (true_p + false_p.sum(axis=-1))


def normalised_probability(answer_loss, perturbed_losses) -> float:
    """Real authors / world facts: p(true) / (p(true) + sum_j p(perturbed_j)), averaged."""
    return float(np.mean(normalised_probabilities(answer_loss, perturbed_losses)))


def forget_quality(model_ratios, reference_ratios) -> float:
    """p-value of the two-sample KS test between the model's and the reference's forget truth ratios.

    TOFU's code tests exp(perturbed - paraphrased) = 1/r; a KS test is invariant under
    a monotone map applied to both samples, so testing r gives the same p-value.
    """
    return float(ks_2samp(np.asarray(model_ratios, float), np.asarray(reference_ratios, float)).pvalue)


def model_utility(values) -> float:
    """Harmonic mean of the 9 values {probability, ROUGE-L recall, truth ratio} x
    {retain, real authors, world facts}; 0 if any is 0 (scipy's hmean)."""
    values = list(values)
    if len(values) != 9:
        raise ValueError(f"model utility is the harmonic mean of 9 values, got {len(values)}")
    return harmonic_mean(values)


def harmonic_mean(values) -> float:
    """scipy's hmean, 0 if any value is 0 (TOFU's rule for Model Utility)."""
    values = np.asarray(list(values), float)
    if np.any(values <= 0):
        return 0.0
    return float(hmean(values))


_SCORER = None


def rouge_l_recall(predictions: list[str], references: list[str]) -> list[float]:
    """ROUGE-L recall of each generation against its reference answer (stemmer on)."""
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [_SCORER.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references)]
