"""MU-Bench's CIFAR-10: image classification (10 classes) with a ResNet, over the shared base in ``mubench``."""
from __future__ import annotations

from mcu_ray.tasks import mubench

MODALITY = mubench.Modality(name="cifar10", images=("img",), text="", num_labels=10,
                            default_dataset="uoft-cs/cifar10", checkpoint_class="AutoModelForImageClassification")


def tiny_model(opts: mubench.Options, tokenizer):
    """A ResNet of two stages of one basic block each, widths hidden_size and twice that (no text: no tokenizer)."""
    import transformers as tf

    h = opts.hidden_size
    return tf.ResNetForImageClassification(tf.ResNetConfig(
        num_channels=3, embedding_size=h, hidden_sizes=[h, 2 * h], depths=[1, 1], layer_type="basic",
        num_labels=MODALITY.num_labels))


TASK = mubench.task(MODALITY, tiny_model)
