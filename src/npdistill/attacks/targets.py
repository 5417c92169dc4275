"""Target classes for targeted attacks."""
import numpy as np

from .._checks import as_array, check_labels, check_number, check_seed


def random_targets(y, num_classes, seed=None):
    """A target drawn uniformly among the other classes for each label: (N,) int64, never y.

    seed : int, None or a numpy Generator (drawn from, so a caller's stream continues).
    """
    num_classes = check_number(num_classes, "num_classes", low=2, integer=True)
    y = check_labels(as_array(y, "y"), len(y), num_classes, "y")
    rng = np.random.default_rng(check_seed(seed, generator=True))
    return (y + rng.integers(1, num_classes, len(y))) % num_classes
