"""The gradient-masking checklist: ``masking_report(model, x, y, eps=...)`` runs the checks
of Carlini et al. (2019, "On Evaluating Adversarial Robustness", section 5 and appendix)
that apply to a classifier attacked in an ε-ball, and says of each what it measured and
whether it points at masking. Exposed as ``npdistill.metrics.masking_report``.

A net whose gradients are masked (defensive distillation is the textbook case: the
softmax saturates, the input gradient of the cross-entropy underflows to exactly 0) looks
robust to gradient attacks on the cross-entropy while it is not. Each check compares
attacks that should agree, or states something every honest evaluation shows:

- ``single-step beats iterative``: FGSM breaks more images than PGD on the same loss
  and budget. An iterative attack includes FGSM's step; doing worse means its gradient
  leads nowhere.
- ``gradient-free beats gradient-based``: the Square attack, which never reads a
  gradient, breaks more than the gradient attacks on the cross-entropy (FGSM, PGD,
  APGD-CE).
- ``loss-scale sensitivity``: APGD on the DLR loss, which does not change when the logits
  are scaled, breaks more than APGD on the cross-entropy, which does: the masking lives in
  the softmax's scale.
- ``unbounded budget``: at a budget as wide as the clip box any image can become any
  other, so a working iterative attack breaks (nearly) all of them; accuracy left under
  one there means the attack, not the model, stopped.
- ``accuracy not monotone``: accuracy under an attack rising with ε (a larger ball holds
  the smaller one's examples).
- ``zero or non-finite gradients``: images whose input gradient of the cross-entropy is
  exactly 0 everywhere, or not finite.

A check is *flagged* when its measurement passes its threshold by more than ``margin``
(a share of the images); the report flags the model when any check does. Clearing every
check does not prove robustness; failing one says the gradient attacks' numbers cannot
be trusted.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ._checks import check_clip, check_labels, check_number, check_probability
from ._files import write_text
from .attacks.fgsm import loss_gradient, norm_key
from .evaluation import ATTACKS, Evaluation, evaluate
from .placement import passes
from .typing import Clip, Images, Labels, Model, Norm, PathArg, ProgressArg

ROLES = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "square")   # the attacks the checks compare


@dataclass
class Check:
    """One check: its ``name``, what it ``measured`` (in words and as ``numbers``), and
    whether it points at masking (``flagged``)."""
    name: str
    measured: str
    flagged: bool
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class MaskingReport:
    """The checklist's verdicts (``checks``), and the evaluation they read."""
    checks: list[Check]
    evaluation: Evaluation
    eps: float
    margin: float

    @property
    def masked(self) -> bool:
        """Whether any check points at gradient masking."""
        return any(check.flagged for check in self.checks)

    @property
    def flagged(self) -> list[str]:
        return [check.name for check in self.checks if check.flagged]

    def table(self) -> str:
        """A markdown table: each check, its measurement and verdict."""
        verdict = {True: "**masking**", False: "clear"}
        lines = ["| check | measured | verdict |", "|---|---|---|"]
        lines += [f"| {c.name} | {c.measured} | {verdict[c.flagged]} |" for c in self.checks]
        summary = (f"gradient masking: {', '.join(self.flagged)} point at it"
                   if self.masked else "no check points at gradient masking")
        return "\n".join(lines) + f"\n\n{len(self.evaluation.correct)} images, ε = " \
            f"{self.eps:g}, margin {self.margin:.0%}: {summary}."

    def to_json(self, path: PathArg | None = None) -> str:
        """The report (and its evaluation) as JSON; written atomically to ``path`` when given."""
        text = json.dumps({"eps": self.eps, "margin": self.margin, "masked": self.masked,
                           "checks": [vars(c) for c in self.checks],
                           "evaluation": json.loads(self.evaluation.to_json())}, indent=1)
        if path is not None:
            write_text(path, text + "\n", "masking report")
        return text


def _share(value):
    return f"{100 * value:.0f}%"


def masking_report(model: Model, x: Images, y: Labels, *, eps: float = 0.3,
                   norm: Norm = "inf", clip: Clip = (0.0, 1.0), margin: float = 0.05,
                   options: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0,
                   client: Any = None, progress: ProgressArg = None) -> MaskingReport:
    """The masking checklist (module docstring) for ``model`` on (x, y) at budget ``eps``.

    Runs ``evaluate`` with FGSM, PGD-CE, APGD-CE, APGD-DLR and Square at eps / 3,
    2 eps / 3, eps and the whole clip box, and the cross-entropy's input gradient once.
    options : per attack name (from ``evaluation.ATTACKS``), settings to change, e.g.
        {"square": {"queries": 1000}} (default: the papers')
    margin : the share of images by which a measurement must pass its threshold to flag
    client, progress : as ``evaluate``
    """
    check_number(eps, "eps", low=0, low_open=True)
    check_probability(margin, "margin", one=False)
    lo, hi = check_clip(clip)
    norm = "inf" if norm_key(norm) == "inf" else "2"
    options = dict(options or {})
    for name, settings in options.items():
        if name not in ROLES:
            raise ValueError(f"options names the attack {name!r}: the report runs "
                             f"{list(ROLES)}")
        if not isinstance(settings, Mapping):
            raise TypeError(f"options[{name!r}] must be a dict, got {type(settings).__name__}")
    model.check_images(x, box=(lo, hi))
    y = check_labels(y, len(x), model.num_classes)
    width = (hi - lo) * (1 if norm == "inf" else math.sqrt(x[0].size))
    # eps / 3 and 2 eps / 3 as a person writes them (0.1, not 0.09999999999999999)
    thirds = [float(f"{eps * k / 3:.12g}") for k in (1, 2)]
    budgets = tuple(sorted({*thirds, eps, max(width, eps * 1.0001)}))
    ev = evaluate(model, x, y, attacks=[(r, dict(options.get(r, {}))) for r in ROLES],
                  eps=budgets, norm=2 if norm == "2" else "inf", clip=(lo, hi), seed=seed,
                  client=client, progress=progress)
    at = budgets.index(eps)
    broke = dict(zip(ROLES, ev.success_rate[at]))            # each attack's success at eps
    labels = {r: ATTACKS[r][0] for r in ROLES}
    checks = [_single_step(broke, margin), _gradient_free(broke, labels, margin),
              _loss_scale(broke, margin), _unbounded(ev, budgets[-1], margin),
              _monotone(ev, margin), _gradients(model, x, y, margin)]
    return MaskingReport(checks=checks, evaluation=ev, eps=float(eps), margin=float(margin))


def _single_step(broke, margin):
    gap = broke["fgsm"] - broke["pgd"]
    return Check("single-step beats iterative",
                 f"FGSM breaks {_share(broke['fgsm'])}, PGD-CE {_share(broke['pgd'])}",
                 bool(gap > margin), {"fgsm": broke["fgsm"], "pgd": broke["pgd"]})


def _gradient_free(broke, labels, margin):
    best = max(("pgd", "apgd-ce", "fgsm"), key=lambda r: broke[r])     # ties: the iterative
    return Check("gradient-free beats gradient-based",
                 f"Square breaks {_share(broke['square'])}, the best gradient attack on the "
                 f"cross-entropy ({labels[best]}) {_share(broke[best])}",
                 bool(broke["square"] - broke[best] > margin),
                 {"square": broke["square"], "best_gradient": broke[best]})


def _loss_scale(broke, margin):
    return Check("loss-scale sensitivity",
                 f"APGD-DLR breaks {_share(broke['apgd-dlr'])}, APGD-CE "
                 f"{_share(broke['apgd-ce'])}",
                 bool(broke["apgd-dlr"] - broke["apgd-ce"] > margin),
                 {"apgd_dlr": broke["apgd-dlr"], "apgd_ce": broke["apgd-ce"]})


def _unbounded(ev, budget, margin):
    iterative = [a for a, label in enumerate(ev.attacks) if label != "FGSM"]
    left = {ev.attacks[a]: float(ev.attack_accuracy[-1, a]) for a in iterative}
    most = max(left, key=left.get)
    return Check("unbounded budget",
                 f"at ε = {budget:g} (the whole box) {_share(left[most])} of the images stay "
                 f"robust to {most} (the iterative attack leaving most)",
                 bool(left[most] > margin), {"eps": budget, "accuracy": left})


def _monotone(ev, margin):
    accuracy = ev.attack_accuracy                             # (E, A)
    rise = np.maximum(np.diff(accuracy, axis=0), 0).max(initial=0.0)
    worst = int(np.argmax(np.diff(accuracy, axis=0).max(axis=0))) if len(accuracy) > 1 else 0
    return Check("accuracy not monotone",
                 f"the largest rise of an attack's accuracy with ε: {100 * rise:.0f} points "
                 f"({ev.attacks[worst]})", bool(rise > margin),
                 {"largest_rise": float(rise), "attack": ev.attacks[worst]})


def gradient_zeros(grad: np.ndarray) -> dict[str, float]:
    """Of input gradients (N, ...): the share of components exactly 0, of images whose
    whole gradient is 0 (FGSM cannot move them), and of non-finite components."""
    flat = grad.reshape(len(grad), -1)
    return {"zero_fraction": float((flat == 0).mean()),
            "all_zero_images": float((flat == 0).all(axis=1).mean()),
            "nonfinite_fraction": float((~np.isfinite(flat)).mean())}


def _gradients(model, x, y, margin):
    row = gradient_zeros(loss_gradient(passes(model), x, y))
    zero, nonfinite = row["all_zero_images"], row["nonfinite_fraction"]
    return Check("zero or non-finite gradients",
                 f"{_share(zero)} of the images have an input gradient of exactly 0; "
                 f"{nonfinite:.1%} of its components are not finite",
                 bool(zero > margin or nonfinite > 0), row)
