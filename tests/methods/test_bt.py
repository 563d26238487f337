"""Bad Teaching (BT): its KL to a teacher, against the formula on probabilities."""
import torch

from mcu_ray.methods.bt import kl_to_teacher


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
