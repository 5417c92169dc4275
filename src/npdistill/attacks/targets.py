"""Target classes for targeted attacks."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .._checks import as_array, check_labels, check_number, check_seed
from ..typing import Labels


def goal(y, target, attack, *, targeted_only=False):
    """(labels, targeted) of an attack called as attack(model, x, y=None, *, target=None):
    untargeted with the true classes y, targeted with target=, exactly one of them."""
    if targeted_only and target is None:
        raise TypeError(f"{attack} is a targeted attack: pass the classes to reach as "
                        f"target= ({attack}(model, x, target=t)); the third positional "
                        f"argument of every attack is the true class y")
    if (y is None) == (target is None):
        raise TypeError(f"{attack}: give exactly one of y (untargeted: leave the true class "
                        f"y, {attack}(model, x, y)) or target= (targeted: reach class target, "
                        f"{attack}(model, x, target=t))")
    return (y, False) if target is None else (target, True)


def random_targets(y: Labels, num_classes: int,
                   seed: int | np.random.Generator | None = None) -> npt.NDArray[np.int64]:
    """A target drawn uniformly among the other classes for each label: (N,) int64, never y.

    seed : int, None or a numpy Generator (drawn from, so a caller's stream continues).
    """
    num_classes = check_number(num_classes, "num_classes", low=2, integer=True)
    y = check_labels(as_array(y, "y"), len(y), num_classes, "y")
    rng = np.random.default_rng(check_seed(seed, generator=True))
    return (y + rng.integers(1, num_classes, len(y))) % num_classes
