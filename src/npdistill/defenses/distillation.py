"""Defensive distillation (Papernot et al., 2016, "Distillation as a Defense to
Adversarial Perturbations against Deep Neural Networks", section IV).

1. A teacher is trained at temperature T on the hard labels.
2. Its soft labels softmax(Z(x) / T) on the training set replace the labels.
3. A student of the same architecture is trained at the same T on them.
4. The student is deployed at T = 1: its logits were learnt at a scale of
   about T, so softmax(Z) saturates and its input gradients vanish (in
   float32, often to exactly 0).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .._checks import check_labels, check_pair, check_positive, check_seed
from ..nn.model import Sequential
from ..train import train
from ..typing import FloatArray, Images, Labels, Model, ProgressArg


def soft_labels(teacher: Model, x: Images, temperature: float,
                batch_size: int = 512) -> FloatArray:
    """The teacher's probabilities softmax(Z(x) / T), (N, K) rows summing to 1."""
    check_positive(temperature, "temperature")
    return teacher.predict_proba(x, T=temperature, batch_size=batch_size)


def distill(teacher: Sequential, data: tuple[Images, Labels], temperature: float, *,
            student: Sequential | None = None, seed: int = 0, loss_scale: float | None = None,
            logits_lr_factor: float | None = None, progress: ProgressArg = True,
            **train_options: Any) -> Sequential:
    """Train a student at ``temperature`` on the teacher's soft labels.

    Parameters
    ----------
    teacher : Sequential returning logits (normally trained at ``temperature``)
    data : (x, y) training set; y (hard labels) is used only to report accuracy
    temperature : T of the soft labels and of the student's training softmax
    student : the model to train; default: the teacher's architecture with fresh
        weights drawn from ``seed``
    loss_scale, logits_lr_factor : how training at T keeps the pace of training at
        T = 1 (the cross-entropy at T divides the logits' gradient by T: the paper's
        50 epochs absorb that, a few epochs do not). Default: ``tempered_steps(T)``,
        the logits layer's learning rate times T ** 2 and nothing else scaled (see
        ``train``); it trains at every T of the papers with their lr of 0.1. Giving
        loss_scale alone scales every layer's gradient instead (the former default,
        loss_scale = T, diverged at T >= 20 with lr 0.1).
    seed, progress, train_options : passed to ``train`` (epochs, lr, validation,
        checkpoint_dir ...)

    Returns
    -------
    student : trained, to be deployed at T = 1; its metadata records the
        distillation temperature and the teacher's parameters' checksum.
    """
    x, y = check_pair(data, "data")
    teacher.check_images(x, "data x")
    check_labels(y, len(x), teacher.num_classes, "data y")
    check_positive(temperature, "temperature")
    check_seed(seed)
    if student is None:
        student = teacher.copy()
        rng = np.random.default_rng(seed)
        for layer in student.layers:
            layer.initialize(rng)
        student.metadata.pop("training", None)
    soft = soft_labels(teacher, x, temperature)
    student, _ = train(student, (x, soft), temperature=temperature, seed=seed, progress=progress,
                       **tempered_steps(temperature, loss_scale, logits_lr_factor),
                       **train_options)
    student.metadata["distillation"] = {
        "temperature": float(temperature),
        "teacher_training_temperature": teacher.metadata.get("training_temperature"),
        "teacher_checksum": teacher.checksum(),
        "deployed_temperature": 1.0,
    }
    return student


def tempered_steps(temperature, loss_scale=None, logits_lr_factor=None):
    """train()'s loss_scale and logits_lr_factor for training at ``temperature``: those
    given, else the logits layer's learning rate times T ** 2 (and loss_scale 1); a
    loss_scale given alone keeps the logits layer's factor at 1."""
    T = check_positive(temperature, "temperature")
    if loss_scale is None and logits_lr_factor is None:
        return {"loss_scale": 1.0, "logits_lr_factor": T * T}
    return {"loss_scale": 1.0 if loss_scale is None else loss_scale,
            "logits_lr_factor": 1.0 if logits_lr_factor is None else logits_lr_factor}


def defensive_distillation(architecture: Callable[..., Sequential],
                           data: tuple[Images, Labels], temperature: float, *, seed: int = 0,
                           loss_scale: float | None = None,
                           logits_lr_factor: float | None = None, progress: ProgressArg = True,
                           **train_options: Any) -> tuple[Sequential, Sequential]:
    """The whole defense in one call: (teacher, student).

    architecture : a function seed -> Sequential (e.g. ``architectures.papernot_mnist``)
    data : (x, y) with hard labels; train_options as in ``train`` (epochs, validation ...).
    The teacher is trained at ``temperature`` on y; the student is ``distill``ed from it.
    Both train with ``loss_scale`` and ``logits_lr_factor`` (default: the logits
    layer's learning rate times T ** 2, see ``distill``).
    """
    if not callable(architecture):
        raise TypeError(f"architecture must be a function seed -> Sequential (such as "
                        f"architectures.papernot_mnist), got {type(architecture).__name__}")
    check_pair(data, "data")
    check_positive(temperature, "temperature")
    if check_seed(seed) is None:
        raise TypeError("seed must be a non-negative integer, got None (the student's seed is "
                        "seed + 1)")
    steps = tempered_steps(temperature, loss_scale, logits_lr_factor)
    teacher = architecture(seed=seed)
    teacher, _ = train(teacher, data, temperature=temperature, seed=seed, progress=progress,
                       **steps, **train_options)
    student = distill(teacher, data, temperature, seed=seed + 1, progress=progress, **steps,
                      **train_options)
    return teacher, student
