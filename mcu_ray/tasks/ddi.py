"""MU-Bench's DDI-2013: biomedical relation classification of a sentence (5 labels) with a BERT-style
encoder, over the shared base in ``mubench``. No default dataset: the sweep file names MU-Bench's release."""
from __future__ import annotations

from mcu_ray.tasks import mubench

MODALITY = mubench.Modality(name="ddi", images=(), text="sentence", num_labels=5, default_dataset="",
                            checkpoint_class="AutoModelForSequenceClassification")


def tiny_model(opts: mubench.Options, tokenizer):
    """A two-layer BERT of width hidden_size over the tokenizer's vocabulary."""
    import transformers as tf

    h = opts.hidden_size
    return tf.BertForSequenceClassification(tf.BertConfig(
        vocab_size=len(tokenizer), hidden_size=h, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * h,
        max_position_embeddings=opts.max_length, num_labels=MODALITY.num_labels))


TASK = mubench.task(MODALITY, tiny_model)
