"""AttackResult: what every attack returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..typing import Images


@dataclass
class AttackResult:
    """Adversarial examples and how far they moved.

    x_adv : (N, C, H, W) the perturbed inputs (equal to x where nothing was changed)
    success : (N,) bool, the attack's goal reached (target class, or any other class)
    iterations : (N,) int64, iterations spent on each input
    l0 : (N,) int64, number of input components changed
    l2, linf : (N,) float64, Euclidean and max-norm size of x_adv - x
    target : (N,) int64 target classes of a targeted attack, else None
    """
    x_adv: np.ndarray
    success: np.ndarray
    iterations: np.ndarray
    l0: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    target: np.ndarray | None = None

    @classmethod
    def from_examples(cls, x: Images, x_adv: Images, success: npt.ArrayLike,
                      iterations: npt.ArrayLike,
                      target: npt.NDArray[np.int64] | None = None) -> AttackResult:
        delta = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
        return cls(x_adv=x_adv, success=np.asarray(success, bool),
                   iterations=np.asarray(iterations, np.int64),
                   l0=np.count_nonzero(delta, axis=1).astype(np.int64),
                   l2=np.sqrt((delta ** 2).sum(axis=1)), linf=np.abs(delta).max(axis=1, initial=0.0),
                   target=target)

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if self.success.size else 0.0

    def __repr__(self):
        ok = self.success
        l0 = f"{self.l0[ok].mean():.1f}" if ok.any() else "-"
        return (f"AttackResult(n={len(ok)}, success={self.success_rate:.2%}, "
                f"mean L0 of successes={l0})")
