"""Robust accuracy as one call: ``evaluate(model, x, y)`` runs a set of attacks at each
budget ε and reports, per ε, the clean accuracy, each attack's accuracy and the worst
case over the attacks -- an image counts as robust at ε only if no attack breaks it --
the evaluation a paper reports (Croce & Hein, 2020; Carlini et al., 2019).

The default set holds the attacks distillation's masking cannot fool beside those it
does: FGSM and PGD on the cross-entropy, APGD on the cross-entropy and on the
scale-invariant DLR loss, and the gradient-free Square attack, in L-inf or L2.

Each attack runs on the images the model classifies correctly, in pieces of at most
``chunk`` images; with ``client=`` the same pieces run on Dask (``distributed.map_attack``),
so the numbers are the same with or without a cluster and for any number of workers.
An image counts as broken when the model's class of its example differs from its label
and the example lies within ε of it and inside the clip box; an attack returning an
example outside its budget is an error, never a success.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ._checks import (check_clip, check_labels, check_number, check_output_dir,
                      check_positive, check_seed)
from ._files import write_text
from .attacks import apgd, fgsm, pgd, square
from .attacks.fgsm import norm_key
from .distributed import concatenate, map_attack
from .placement import passes
from .progress import Progress
from .runs import read_cached
from .typing import Clip, Images, Labels, Model, Norm, PathArg, ProgressArg

# name -> (label, attack, its options): what evaluate's `attacks` may name
ATTACKS: dict[str, tuple[str, Callable[..., Any], dict[str, Any]]] = {
    "fgsm": ("FGSM", fgsm, {}),
    "pgd": ("PGD-CE", pgd, {"steps": 40}),
    "apgd-ce": ("APGD-CE", apgd, {"loss": "ce", "steps": 100}),
    "apgd-dlr": ("APGD-DLR", apgd, {"loss": "dlr", "steps": 100}),
    "square": ("Square", square, {"queries": 5000}),
}
DEFAULT_ATTACKS = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "square")
FORMAT = 1               # of to_json's document
SLACK = 1e-5             # relative, beside the dtype's rounding: at the edge of the ε-ball


@dataclass
class Evaluation:
    """What ``evaluate`` measured.

    eps : (E,) the budgets, increasing; norm : "inf" or "2"
    attacks : (A,) the attacks' labels (e.g. "APGD-DLR")
    correct : (N,) bool, the model's class of the clean image is its label
    broken : (E, A, N) bool, attack a at eps[e] found an example of image n that the model
        misclassifies (False where the image was misclassified clean: it was not attacked)
    seconds : (A,) the time each attack took over all budgets
    """
    eps: tuple[float, ...]
    norm: str
    attacks: tuple[str, ...]
    correct: npt.NDArray[np.bool_]
    broken: npt.NDArray[np.bool_]
    seconds: tuple[float, ...]

    @property
    def clean_accuracy(self) -> float:
        return float(self.correct.mean())

    @property
    def robust(self) -> npt.NDArray[np.bool_]:
        """(E, N) bool: correct clean and broken by no attack at that ε."""
        return self.correct[None] & ~self.broken.any(axis=1)

    @property
    def robust_accuracy(self) -> npt.NDArray[np.float64]:
        """(E,) the worst case over the attacks: the share of images no attack breaks."""
        return self.robust.mean(axis=1)

    @property
    def attack_accuracy(self) -> npt.NDArray[np.float64]:
        """(E, A) the accuracy under each attack alone."""
        return (self.correct[None, None] & ~self.broken).mean(axis=2)

    @property
    def success_rate(self) -> npt.NDArray[np.float64]:
        """(E, A) each attack's own success: the share of the correctly classified images
        it broke."""
        attacked = max(int(self.correct.sum()), 1)
        return self.broken.sum(axis=2) / attacked

    def table(self) -> str:
        """A markdown table: per ε, the clean accuracy, each attack's and the worst case."""
        norm = "L∞" if self.norm == "inf" else "L2"
        header = ["ε (" + norm + ")", "clean", *self.attacks, "worst case"]
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---:" for _ in header) + "|"]
        for e, eps in enumerate(self.eps):
            cells = [f"{eps:g}", _percent(self.clean_accuracy),
                     *(_percent(a) for a in self.attack_accuracy[e]),
                     "**" + _percent(self.robust_accuracy[e]) + "**"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append(f"\n{len(self.correct)} images; accuracy under each attack alone, and "
                     f"the worst case: an image counts as robust only if no attack breaks it.")
        return "\n".join(lines)

    def to_json(self, path: PathArg | None = None) -> str:
        """The evaluation as JSON (the per-image record included); written atomically to
        ``path`` when given."""
        text = json.dumps({
            "format": FORMAT, "eps": list(self.eps), "norm": self.norm,
            "attacks": list(self.attacks), "images": len(self.correct),
            "seconds": list(self.seconds),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy.tolist(),
            "attack_accuracy": self.attack_accuracy.tolist(),
            "success_rate": self.success_rate.tolist(),
            "correct": self.correct.astype(int).tolist(),
            "broken": self.broken.astype(int).tolist()}, indent=1)
        if path is not None:
            write_text(path, text + "\n", "evaluation")
        return text

    @classmethod
    def from_json(cls, text: str) -> Evaluation:
        """The Evaluation that ``to_json`` wrote."""
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not an evaluation of format {FORMAT}: format "
                             f"{doc.get('format') if isinstance(doc, dict) else None!r}")
        return cls(eps=tuple(doc["eps"]), norm=doc["norm"], attacks=tuple(doc["attacks"]),
                   correct=np.asarray(doc["correct"], bool),
                   broken=np.asarray(doc["broken"], bool).reshape(
                       len(doc["eps"]), len(doc["attacks"]), len(doc["correct"])),
                   seconds=tuple(doc["seconds"]))

    def plot(self, path: PathArg | None = None, title: str | None = None) -> Any:
        """Accuracy against ε, one curve per attack and the worst case (a Figure)."""
        from .plots.evaluation import robust_accuracy
        return robust_accuracy(self, path=path, title=title)


def _percent(value):
    return f"{100 * value:.1f}%"


def _attack_list(attacks, norm):
    """[(label, function, options)] from names, (name, options) or (label, function,
    options) entries; None: the default set."""
    if attacks is None:
        attacks = DEFAULT_ATTACKS
    if isinstance(attacks, str) or not isinstance(attacks, Sequence) or not attacks:
        raise TypeError(f"attacks must be a non-empty list of attack names (from "
                        f"{sorted(ATTACKS)}), (name, options) or (label, function, options), "
                        f"got {attacks!r}")
    chosen = []
    for entry in attacks:
        if isinstance(entry, (tuple, list)) and len(entry) == 3:
            label, function, options = entry
            if not callable(function):
                raise TypeError(f"attack {label!r}: a (label, function, options) entry needs "
                                f"a function, got {type(function).__name__}")
        else:
            name, options = entry if isinstance(entry, (tuple, list)) and len(entry) == 2 \
                else (entry, {})
            if not isinstance(name, str) or name not in ATTACKS:
                raise ValueError(f"unknown attack {name!r}: expected one of "
                                 f"{sorted(ATTACKS)}, (name, options) or (label, function, "
                                 f"options)")
            label, function, defaults = ATTACKS[name]
            if isinstance(options, Mapping):
                options = {**defaults, **options}
        if not isinstance(options, Mapping):
            raise TypeError(f"the options of attack {label!r} must be a dict, got "
                            f"{type(options).__name__}")
        taken = inspect.signature(function).parameters
        for name in ("eps", "clip", "y", "progress", "target"):
            if name in options:
                raise ValueError(f"attack {label!r}: evaluate sets {name!r} itself; leave it "
                                 f"out of the options")
        if "norm" not in taken and norm != "inf":
            raise ValueError(f"attack {label!r} is L-inf only, but norm={norm!r}: leave it "
                             f"out or evaluate with norm='inf'")
        chosen.append((str(label), function, dict(options)))
    labels = [label for label, _, _ in chosen]
    if len(set(labels)) != len(labels):
        raise ValueError(f"attacks must have distinct labels, got {labels}")
    return chosen


def _budgets(eps):
    values = np.atleast_1d(np.asarray(eps, dtype=object))
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"eps must be one budget or a list of them, got {eps!r}")
    budgets = tuple(check_number(v, f"eps[{i}]", low=0) for i, v in enumerate(values))
    if any(b <= a for a, b in zip(budgets, budgets[1:])):
        raise ValueError(f"eps must be increasing, got {list(budgets)}")
    return budgets


def _distance(x, x_adv, norm):
    d = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    return np.abs(d).max(axis=1, initial=0.0) if norm == "inf" else np.sqrt((d ** 2).sum(axis=1))


def evaluate(model: Model, x: Images, y: Labels, *,
             attacks: Sequence[Any] | None = None,
             eps: float | Sequence[float] = (0.0, 0.1, 0.2, 0.3), norm: Norm = "inf",
             clip: Clip = (0.0, 1.0), seed: int = 0, chunk: int = 100,
             client: Any = None, cache: PathArg | None = None,
             progress: ProgressArg = None) -> Evaluation:
    """Robust accuracy of ``model`` on (x, y) at each budget in ``eps``, worst case over
    ``attacks``.

    attacks : names from ``evaluation.ATTACKS`` ("fgsm", "pgd", "apgd-ce", "apgd-dlr",
        "square"), a (name, options) pair to change an attack's settings (e.g. ("pgd",
        {"steps": 10})), or (label, function, options) for any function with an attack's
        signature; default: all five
    eps : the budgets, increasing (0 gives the clean accuracy as a point of the curve)
    norm : "inf" or 2, for every attack that takes one
    clip : the input box; seed : given to every attack that takes one
    chunk : the most images an attack runs on at once (the pieces Dask gets)
    client : a dask ``distributed.Client``: the pieces run on its workers
    cache : a folder: each attack's record is saved there when it is done, and reused by
        a later call with the same model, images, budgets and settings (an interrupted
        evaluation resumes); the model needs a ``checksum()`` (Sequential, TorchModel)
    progress : one line per attack, counting images over all budgets (see
        npdistill.progress)
    """
    norm = "inf" if norm_key(norm) == "inf" else "2"
    chosen = _attack_list(attacks, norm)
    budgets = _budgets(eps)
    clip = check_clip(clip)
    check_seed(seed)
    check_positive(chunk, "chunk", integer=True)
    model.check_images(x, box=clip)
    y = check_labels(y, len(x), model.num_classes)
    predict = passes(model).predict
    # the float rounding of x + delta: half an ulp at 1 per pixel, summed in L2
    rounding = np.finfo(x.dtype).eps * (1 if norm == "inf" else math.sqrt(x[0].size))
    correct = predict(x) == y
    where = np.flatnonzero(correct)
    pieces = np.array_split(np.arange(len(where)), max(1, math.ceil(len(where) / chunk)))
    broken = np.zeros((len(budgets), len(chosen), len(x)), bool)
    seconds = []
    parts = None if cache is None else _Parts(cache, model, x, y, budgets, chunk, progress)
    for a, (label, function, options) in enumerate(chosen):
        taken = inspect.signature(function).parameters
        settings = dict(options, clip=clip)
        if "norm" in taken:
            settings["norm"] = 2 if norm == "2" else "inf"
        if "seed" in taken and "seed" not in options:
            settings["seed"] = seed
        saved = None if parts is None else parts.read(label, function, settings)
        if saved is not None:
            broken[:, a], spent = saved
            seconds.append(spent)
            continue
        attacked = [e for e, budget in enumerate(budgets) if budget > 0]
        shown = Progress(progress, f"evaluate {label}", len(attacked) * len(where), "images")
        done, started = 0, time.perf_counter()
        for e in attacked:
            budget = budgets[e]
            if len(where):
                result = _attacked(function, model, x[where], y[where], budget, settings,
                                   pieces, client)
                distance = _distance(x[where], result.x_adv, norm)
                lo, hi = clip
                outside = (result.x_adv < lo).any() or (result.x_adv > hi).any()
                if outside or (distance > budget * (1 + SLACK) + rounding).any():
                    raise ValueError(f"attack {label!r} returned examples outside its budget: "
                                     f"largest {'L-inf' if norm == 'inf' else 'L2'} distance "
                                     f"{distance.max():.6g} for eps={budget:g}, or outside "
                                     f"the clip box [{lo:g}, {hi:g}]")
                broken[e, a, where] = predict(result.x_adv) != y[where]
            done += len(where)
            shown.update(done, eps=budget)
        seconds.append(time.perf_counter() - started)
        if parts is not None:
            parts.write(label, function, settings, broken[:, a], seconds[-1])
    return Evaluation(eps=budgets, norm=norm, attacks=tuple(label for label, _, _ in chosen),
                      correct=correct, broken=broken, seconds=tuple(seconds))


def _attacked(function, model, x, y, budget, settings, pieces, client):
    """The attack's result on x, piece by piece (here or on Dask: the same pieces)."""
    if client is not None:
        return map_attack(function, model, x, y, client=client, shards=len(pieces),
                          eps=budget, **settings)
    return concatenate(function(model, x[idx], y[idx], eps=budget, progress=False,
                                **settings) for idx in pieces)


class _Parts:
    """evaluate's cache: one JSON file per attack under the folder, keyed by everything
    its record depends on; a damaged file is moved aside and the attack run again."""

    def __init__(self, folder, model, x, y, budgets, chunk, progress):
        if not callable(getattr(model, "checksum", None)):
            raise TypeError(f"cache= needs a model with a checksum() (Sequential, "
                            f"interop.TorchModel), got {type(model).__name__}")
        self.folder = check_output_dir(folder, "cache")
        data = hashlib.sha256(np.ascontiguousarray(x).tobytes())
        data.update(np.ascontiguousarray(y).tobytes())
        self.common = {"model": model.checksum(), "data": data.hexdigest(),
                       "shape": list(x.shape), "eps": list(budgets), "chunk": chunk}
        self.progress = progress

    def _path(self, label):
        return self.folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", label) + ".json")

    def _key(self, label, function, settings):
        return json.loads(json.dumps(
            {**self.common, "attack": label,
             "function": f"{function.__module__}.{function.__qualname__}",
             "settings": settings}, default=repr))

    def _parsed(self, path):
        """The file's (key, record, seconds); a ValueError where it is damaged."""
        try:
            doc = json.loads(path.read_text())
            broken = np.asarray(doc["broken"], bool)
            key, seconds = doc["key"], float(doc["seconds"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"no {exc}") from None
        if broken.shape != (len(self.common["eps"]), self.common["shape"][0]):
            raise ValueError(f"a record of shape {broken.shape}")
        return key, broken, seconds

    def read(self, label, function, settings):
        path = self._path(label)
        saved = read_cached(path, self._parsed, "attacking again", self._say)
        if saved is None:
            return None
        if saved[0] != self._key(label, function, settings):
            self._say(f"{path} was measured with other settings: attacking again")
            return None
        self._say(f"reusing {path}")
        return saved[1:]

    def write(self, label, function, settings, broken, seconds):
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text(self._path(label), json.dumps(
            {"key": self._key(label, function, settings), "seconds": seconds,
             "broken": broken.astype(int).tolist()}) + "\n", "evaluation record")

    def _say(self, message):
        if self.progress is not False and not callable(self.progress):
            print(message, file=sys.stderr)
