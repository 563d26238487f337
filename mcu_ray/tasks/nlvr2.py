"""MU-Bench's NLVR2: visual reasoning over an image pair and a sentence (2 labels) with ViLT, over the
shared base in ``mubench``. No default dataset: the sweep file names MU-Bench's release."""
from __future__ import annotations

from mcu_ray.tasks import mubench

MODALITY = mubench.Modality(name="nlvr2", images=("left_image", "right_image"), text="sentence", num_labels=2,
                            default_dataset="", checkpoint_class="ViltForImagesAndTextClassification")


def tiny_model(opts: mubench.Options, tokenizer):
    """A two-layer ViLT of width hidden_size over two images (patches a quarter
    of image_size wide, at least 4 pixels) and the sentence."""
    import transformers as tf

    h = opts.hidden_size
    return tf.ViltForImagesAndTextClassification(tf.ViltConfig(
        vocab_size=len(tokenizer), hidden_size=h, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * h,
        image_size=opts.image_size, patch_size=max(4, opts.image_size // 4), num_images=2,
        modality_type_vocab_size=3, max_position_embeddings=opts.max_length, num_labels=MODALITY.num_labels))


# ViLT samples image patches with random ops in its forward: no vmap
TASK = mubench.task(MODALITY, tiny_model, vectorizable=False)
