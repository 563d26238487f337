"""Bad Teaching (BT): its KL to a teacher and its loss, against the formulas on probabilities."""
import pytest
import torch

from mcu_ray.methods import bt
from mcu_ray.methods.bt import kl_to_teacher
from mcu_ray.methods.common import LossContext


def test_bad_teaching_kl_is_on_probabilities():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    assert abs(kl_to_teacher(logits, logits, 1.0).item()) < 1e-6
    # a constant shift of the logits is the same distribution: KL 0 (KL on raw logits would not be)
    assert abs(kl_to_teacher(logits, logits + 5.0, 1.0).item()) < 1e-6
    p, q = torch.softmax(torch.tensor([0.0, 0.0, 3.0]), -1), torch.softmax(logits[0], -1)
    by_hand = (p * (p.log() - q.log())).sum()
    assert by_hand > 0.01
    assert torch.isclose(kl_to_teacher(logits, torch.tensor([[0.0, 0.0, 3.0]]), 1.0)[0], by_hand)
    # a higher temperature flattens both: smaller divergence
    assert kl_to_teacher(logits, -logits, 4.0) < kl_to_teacher(logits, -logits, 1.0)


class Teachers:
    """A task whose 'models' return stored logits: the student's, the random and the original teacher's."""

    @staticmethod
    def logits(forward, batch):
        return forward(batch)


def test_bad_teaching_matches_the_random_teacher_on_df_and_the_original_on_dr():
    """(n_f mean KL(random || student) on Df + sum KL(original || student) on Dr) / (n_f + n_r)."""
    forget = {"student": torch.tensor([[0.0, 1.0], [2.0, 0.0]]), "random": torch.tensor([[0.0, 0.0], [0.0, 0.0]])}
    retain = {"student": torch.tensor([[1.0, 1.0]]), "original": torch.tensor([[3.0, 0.0]])}
    ctx = LossContext(Teachers(), None, lambda b: b["student"], torch.Generator(),
                      original_forward=lambda b: b["original"], random_forward=lambda b: b["random"])
    loss, logs = bt.loss(ctx, forget, retain, bt.Params(temperature=2.0))

    def kl(teacher, student):  # KL(softmax(teacher / T) || softmax(student / T)), T = 2
        p, q = torch.softmax(teacher / 2, -1), torch.softmax(student / 2, -1)
        return (p * (p / q).log()).sum(-1)

    forget_kl, retain_kl = kl(forget["random"], forget["student"]), kl(retain["original"], retain["student"])
    assert loss.item() == pytest.approx((forget_kl.sum() + retain_kl.sum()).item() / 3, rel=1e-6)
    assert logs["forget_kl"].item() == pytest.approx(forget_kl.mean().item(), rel=1e-6)
    assert logs["retain_kl"].item() == pytest.approx(retain_kl.item(), rel=1e-6)
