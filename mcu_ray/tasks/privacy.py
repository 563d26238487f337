"""Membership inference: how well an attacker tells the forget set from data the model never saw.

Pure NumPy / scikit-learn over per-example numbers the tasks compute (confidences, losses,
token log-probabilities); no model here. Sources, followed line by line:
- MIA-efficacy (classification): SalUn's SVC attack on prediction confidence,
  OPTML-Group/Unlearn-Saliency (a6e89fd) ``Classification/evaluation/SVC_MIA.py:53-82`` (the SVC)
  and ``:105-108, 130-131`` (the confidence feature), called by ``main_random.py:161-185``
  (shadow members: the first |test| rows of Dr; shadow non-members: the test set; target: Df,
  as its test side); the reported number is the "confidence" entry (``README.md:37``).
- Attack AUCs and PrivLeak: locuslab/open-unlearning (d3d7cf9) ``src/evals/metrics/mia/utils.py:30-70``
  (forget labelled 0, held-out 1, ROC AUC of scores signed like a loss), ``mia/loss.py`` (the
  answer's token-mean NLL), ``mia/min_k.py`` (Min-K% Prob; k 0.4 in
  ``configs/eval/tofu_metrics/mia_min_k.yaml``), ``src/evals/metrics/privacy.py:35-52`` (PrivLeak).
A non-finite input (a diverged model) gives NaN, like every other failed number.
"""
from __future__ import annotations

import numpy as np

MIN_K = 0.4  # open-unlearning configs/eval/tofu_metrics/mia_min_k.yaml: k
SVC_PARAMS = {"C": 3, "gamma": "auto", "kernel": "rbf"}  # SalUn SVC_MIA.py:67


def _finite(*arrays) -> bool:
    return all(np.isfinite(np.asarray(a, float)).all() for a in arrays)


def mia_auc(forget_scores, heldout_scores) -> float:
    """ROC AUC of an attack whose scores are signed like a loss (higher = less likely a member):
    1 when every forget example looks more familiar than every held-out one, 0.5 when the attack
    cannot tell them apart, ties counted half (Mann-Whitney)."""
    from sklearn.metrics import roc_auc_score

    forget, heldout = np.asarray(forget_scores, float), np.asarray(heldout_scores, float)
    if not _finite(forget, heldout):
        return float("nan")
    labels = np.concatenate([np.zeros(len(forget)), np.ones(len(heldout))])  # forget 0, held-out 1
    return float(roc_auc_score(labels, np.concatenate([forget, heldout])))


def min_k_score(token_logprobs, k: float = MIN_K) -> float:
    """Min-K% Prob: minus the mean of the lowest ``k`` fraction (at least one) of an answer's token
    log-probabilities; 0 for an answer with none."""
    logprobs = np.asarray(token_logprobs, float)
    if logprobs.size == 0:
        return 0.0
    count = max(1, int(len(logprobs) * k))
    return float(-np.mean(np.sort(logprobs)[:count]))


def privleak(auc: float, reference_auc: float) -> float:
    """PrivLeak in percent: the relative change of 1 - AUC from the retrained model's; 0 = the retrained
    model's exposure, -100 = every forget example exposed, > 0 = the forget set hidden more than never seen."""
    score, reference = 1 - auc, 1 - reference_auc
    return (score - reference) / (reference + 1e-10) * 100


def svc_mia_efficacy(member_confidence, nonmember_confidence, target_confidence) -> float:
    """SalUn's MIA-efficacy: the fraction of the target rows (Df) that an RBF SVC, fitted to tell the
    shadow members' true-class confidence from the shadow non-members', predicts as non-members."""
    from sklearn.svm import SVC

    members, nonmembers, target = (np.asarray(a, float).reshape(len(a), -1)
                                   for a in (member_confidence, nonmember_confidence, target_confidence))
    if not _finite(members, nonmembers, target):
        return float("nan")
    features = np.concatenate([members, nonmembers])
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = SVC(**SVC_PARAMS).fit(features, labels)
    return float(1 - attack.predict(target).mean())
