"""What the three Carlini-Wagner attacks check before they start."""
import numpy as np

from ..._checks import check_clip, check_labels, check_number, check_positive
from ..targets import goal


def check_logits_model(model, x):
    z = model.forward(x[:8])
    if z.ndim != 2:
        raise ValueError(f"the model must output (N, K) logits, got shape {z.shape}")
    if np.all(z >= 0) and np.allclose(z.sum(axis=1), 1, atol=1e-4):
        raise ValueError("Carlini-Wagner attacks work on logits, but this model's outputs are "
                         "non-negative rows summing to 1 (probabilities): remove the final "
                         "softmax and pass the model that returns logits")


def prepare(model, x, y, target, clip, kappa, batch_size, name):
    """Check the inputs; return (labels, targeted, lo, hi)."""
    labels, targeted = goal(y, target, name)
    lo, hi = check_clip(clip)
    model.check_images(x, box=(lo, hi))
    labels = check_labels(labels, len(x), model.num_classes, "target" if targeted else "y")
    check_number(kappa, "kappa (confidence)", low=0)
    check_positive(batch_size, "batch_size", integer=True)
    check_logits_model(model, x)
    return labels, targeted, lo, hi
