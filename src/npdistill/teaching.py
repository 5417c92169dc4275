"""The numbers behind the teaching figures (docs/teaching.md, docs/tutorials/): why
defensive distillation masks the gradients, and how an attacker gets around it.

``models`` is {name: model}: "baseline" for the undistilled net and each distilled net
under its training temperature ("20"), in the order figures show them; ``load_models``
reads them from a reproduction's models/ folder. Each function computes on the images it
is given and returns plain numbers (and the arrays a figure draws); the figure of the same
name in ``npdistill.plots`` draws them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import attacks, metrics
from ._checks import check_classes
from .nn.model import Sequential, load_model
from .progress import Progress
from .typing import Images, Labels, PathArg, ProgressArg

# {name: model}: "baseline", then the distilled nets under their temperatures
Models = Mapping[str, Sequential]

# the percentiles a box of logit gaps is drawn from: whiskers, quartiles, median
GAP_PERCENTILES = (5, 25, 50, 75, 95)
STUDENT = "student_T"     # a reproduction's distilled nets: models/student_T<T>.npz


def load_models(folder: PathArg) -> dict[str, Sequential]:
    """{name: model} of a reproduction's models/ folder: "baseline", then each
    student_T<T>.npz as "<T>" in order of temperature."""
    folder = Path(folder)
    students = sorted(folder.glob(f"{STUDENT}*.npz"), key=lambda p: float(p.stem[len(STUDENT):]))
    if not (folder / "baseline.npz").is_file() or not students:
        raise ValueError(f"models: {folder} holds no baseline.npz and student_T*.npz; give "
                         f"the models/ folder of a run of python -m npdistill reproduce")
    return {"baseline": load_model(folder / "baseline.npz"),
            **{path.stem[len(STUDENT):]: load_model(path) for path in students}}


def logit_scale(models: Models, x: Images) -> dict[str, dict[str, Any]]:
    """Training at T and deploying at 1 scales the logits by about T and saturates the
    softmax. Per net: the percentiles GAP_PERCENTILES of the gap between the two largest
    logits, its median, and the share of images whose largest softmax output is exactly
    1.0 in the net's dtype."""
    numbers = {}
    for name, model in models.items():
        z = np.sort(model.logits(x), axis=1)
        gaps = z[:, -1] - z[:, -2]
        saturated = 1 - model.predict_proba(x).max(axis=1) == 0
        numbers[name] = {"logit_gap_percentiles": np.percentile(gaps, GAP_PERCENTILES).tolist(),
                         "median_logit_gap": float(np.median(gaps)),
                         "saturated_share": float(saturated.mean())}
    return numbers


def zero_gradients(models: Models, x: Images, y: Labels) -> dict[str, dict[str, float]]:
    """Per net: the share of each attack's input-gradient components that are exactly 0
    in float32 (``metrics.gradient_masking``: FGSM's loss gradient, JSMA's dF/dX, a logit
    margin's), and the median adversarial-gradient amplitude computed in float64 (0 where
    it underflows even there)."""
    numbers = {}
    for name, model in models.items():
        masking = metrics.gradient_masking(model, x, y)
        amplitude = np.median(metrics.adversarial_gradient_amplitude(model, x))
        numbers[name] = {**{f"{k}_zero_fraction": m["zero_fraction"] for k, m in masking.items()},
                         "median_amplitude_float64": float(amplitude)}
    return numbers


def fgsm_sign_zero(models: Models, x: Images, y: Labels, eps: float = 0.3) -> dict[str, Any]:
    """FGSM steps along sign(gradient), and sign(0) = 0: on the hottest net, the first
    image whose whole loss gradient is 0, attacked on the baseline and on that net. Returns
    {"index": i, "eps": eps, "rows": {name: {"clean", "gradient", "adversarial" (arrays
    C x H x W), "clean_class", "adversarial_class", "nonzero", "moved"}}}."""
    hottest = list(models)[-1]
    still = np.flatnonzero(~attacks.loss_gradient(models[hottest], x, y)
                           .reshape(len(x), -1).any(axis=1))
    i = int(still[0]) if still.size else 0
    rows = {}
    for name in ("baseline", hottest):
        model, one, label = models[name], x[i:i + 1], y[i:i + 1]
        gradient = attacks.loss_gradient(model, one, label)[0]
        result = attacks.fgsm(model, one, label, eps=eps)
        rows[name] = {"clean": one[0], "gradient": gradient, "adversarial": result.x_adv[0],
                      "clean_class": int(model.predict(one)[0]),
                      "adversarial_class": int(model.predict(result.x_adv)[0]),
                      "nonzero": int(np.count_nonzero(gradient)), "moved": int(result.l0[0])}
    return {"index": i, "eps": eps, "rows": rows}


def counter_attacks(models: Models, x: Images, y: Labels, eps: float = 0.3, jsma_images: int = 30,
                    cw_images: int = 5, cw_iterations: int = 500, seed: int = 0,
                    progress: ProgressArg = None) -> dict[str, Any]:
    """The attacker's counters to masking, per net: FGSM at T = 1 and with the logits
    divided by the net's training temperature again, JSMA on the softmax and on the
    logits (the first ``jsma_images``), CW L2 on the logits (the first ``cw_images``), to
    random targets drawn with ``seed``. Returns {"images": {"fgsm", "jsma", "cw"},
    "success": {name: {attack: rate}}}; ``progress`` counts the nets."""
    classes = check_classes(next(iter(models.values())).num_classes)
    target = attacks.random_targets(y, classes, seed=seed)
    n, shown = min(len(x), jsma_images), Progress(progress, "counter attacks", len(models), "nets")
    success = {}
    for done, (name, model) in enumerate(models.items(), 1):
        T = model.metadata.get("training_temperature", 1.0)
        success[name] = {
            "FGSM at T = 1": attacks.fgsm(model, x, y, eps=eps).success_rate,
            "FGSM, logits / T": attacks.fgsm(model, x, y, eps=eps, T=T).success_rate,
            "JSMA on the softmax": attacks.jsma(model, x[:n], target=target[:n]).success_rate,
            "JSMA on the logits": attacks.jsma(model, x[:n], target=target[:n],
                                               on="logits").success_rate,
            "CW L2 (logits)": attacks.cw_l2(
                model, x[:cw_images], target=target[:cw_images], max_iterations=cw_iterations,
                binary_search_steps=5, c=0.1, progress=False).success_rate}
        shown.update(done, last=name)
    return {"images": {"fgsm": len(x), "jsma": n, "cw": min(len(x), cw_images)},
            "success": success}


def tgsm_vs_fgsm(models: Models, x: Images, y: Labels) -> dict[str, dict[str, float]]:
    """Ross & Doshi-Velez (2018): on a distilled net the untargeted loss gradient vanishes
    while the targeted one (towards a class the net gives probability ~0, here y + 1)
    explodes. Per net: the median L2 norm of each, computed in float64 from float32."""
    numbers = {}
    for name, model in models.items():
        norms = [np.median(np.linalg.norm(attacks.loss_gradient(model, x, labels)
                                          .reshape(len(x), -1).astype(np.float64), axis=1))
                 for labels in (y, (y + 1) % check_classes(model.num_classes))]
        numbers[name] = {"median_fgsm_gradient_norm": float(norms[0]),
                         "median_tgsm_gradient_norm": float(norms[1])}
    return numbers
