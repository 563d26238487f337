"""NLVR2 as MU-Bench runs it: an image pair and a sentence through ViLT, never vmapped (ViLT's forward draws
random numbers), and a random network built by calling ViLT's concrete class on a checkpoint's config."""
import torch

from mcu_ray.tasks.nlvr2 import TASK
from tests.helpers import mubench_end_to_end


def test_trains_unlearns_and_evaluates_from_hub_layout(tmp_path):
    """The model sees both images stacked, (rows, 2, 3, image_size, image_size), and the sentence's token ids."""
    data = mubench_end_to_end(tmp_path, "nlvr2")
    assert data.train["pixel_values"].shape == (48, 2, 3, 16, 16)
    assert data.train["input_ids"].shape == (48, 12)
    assert TASK.vectorizable is False


def test_random_network_of_a_checkpoint_is_vilt_sharing_no_tensor(tmp_path):
    """Every varying float tensor is drawn anew (constant ones, LayerNorm's 1s, are equal in any fresh ViLT)."""
    import transformers as tf

    torch.manual_seed(0)
    checkpoint = tf.ViltForImagesAndTextClassification(tf.ViltConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=16, patch_size=4, num_images=2, modality_type_vocab_size=3, max_position_embeddings=16,
        num_labels=2))
    checkpoint.save_pretrained(tmp_path)
    random = TASK.random_model(TASK.Options(model=str(tmp_path), epochs=0), seed=1)
    assert type(random) is tf.ViltForImagesAndTextClassification
    saved, drawn = checkpoint.state_dict(), random.state_dict()
    assert drawn.keys() == saved.keys()
    floats = [name for name, tensor in saved.items() if tensor.is_floating_point() and tensor.std() > 0]
    assert floats and [name for name in floats if torch.equal(drawn[name], saved[name])] == []
