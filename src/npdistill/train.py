"""train(): minibatch SGD on cross-entropy at temperature T, with progress,
per-epoch checkpoints and bit-identical resume.

Randomness: epoch e shuffles and draws its dropout masks from
``numpy.random.default_rng([seed, e])``, so a run resumed from the checkpoint
of epoch e replays exactly what an uninterrupted run would have done.
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass

from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from ._checks import (check_output_dir, check_pair, check_positive, check_seed,
                      check_targets)
from ._files import remove_stale_temporaries, removed_note
from .nn.archive import read_archive, write_archive
from .nn.model import Sequential, model_from_archive
from .nn.optim import SGD
from .nn.softmax import cross_entropy
from .placement import device_trainer
from .progress import Progress, ProgressEvent, check_progress, format_seconds
from .train_hooks import describe, penalty_value, transformed
from .typing import Images, Labels, PathArg, ProgressArg

CHECKPOINT_NAME = "checkpoint.npz"
# A batch's mean loss above this many times log K (the loss of a uniform guess) -- or ten
# times the loss the net started from, where that is more -- means training has diverged:
# a trained net's loss is below log K, and e^-(100 log K) is no probability any learning
# run assigns to the true class.
DIVERGED_LOSS_FACTOR = 100


class TrainingDiverged(FloatingPointError):
    """The loss became non-finite or exploded. The model holds the parameters it had
    before the diverging epoch (those of the last checkpoint, if one was written)."""

    def __init__(self, epoch, where, loss, lr, checkpoint):
        self.epoch, self.loss, self.lr, self.checkpoint = epoch, loss, lr, checkpoint
        kept = f"the last good checkpoint, {checkpoint}, is kept" if checkpoint else \
            "no checkpoint was written (pass checkpoint_dir= to keep one per epoch)"
        super().__init__(
            f"training diverged in epoch {epoch} ({where}): loss {loss:.4g}. The model was "
            f"restored to its parameters before that epoch and {kept}. Lower the learning "
            f"rate (lr={lr:g} now; try {lr / 10:g}), or the loss_scale.")


# settings added to the training config after checkpoints were written: their value then
_ADDED_LATER = {"logits_lr_factor": 1.0}
_FALLBACK_DEFAULTS = {"lr": 0.1, "momentum": 0.5, "batch_size": 128,
                      "decay_every": 10, "decay_factor": 0.5}


def data_checksum(x, y):
    """sha256 of the training arrays (recorded in the model, checked on resume)."""
    digest = hashlib.sha256()
    for a in (x, y):
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def train(model: Sequential, data: tuple[Images, npt.NDArray[Any]], *,
          temperature: float = 1.0, epochs: int = 1, batch_size: int | None = None,
          lr: float | None = None, momentum: float | None = None,
          decay_every: int | None = None, decay_factor: float | None = None, seed: int = 0,
          validation: tuple[Images, Labels] | None = None, checkpoint_dir: PathArg | None = None,
          progress: ProgressArg = True, loss_scale: float = 1.0, logits_lr_factor: float = 1.0,
          batch_transform: Callable[..., tuple[Images, npt.NDArray[Any]]] | None = None,
          penalty: Callable[..., float] | None = None) -> tuple[Sequential, dict[str, list]]:
    """Train ``model`` in place on ``data`` and return ``(model, history)``.

    Parameters
    ----------
    model : Sequential returning logits
    data : (x, y); x float (N, C, H, W) in [0, 1] of the model's dtype; y int64
        labels (N,) or soft-label rows (N, K) (distillation)
    temperature : T of the training softmax, softmax(z / T) (Papernot et al., 2016)
    epochs, batch_size, lr, momentum, decay_every, decay_factor : SGD with
        momentum and step decay; None takes the model's training defaults
        (the paper's, for the nets in ``architectures``)
    seed : int; the same seed and data give the same model, bit for bit
    validation : optional (x, y) evaluated after every epoch
    checkpoint_dir : folder; a checkpoint is written after every epoch and a
        run finding one there resumes after its last epoch
    progress : True: one line per epoch (loss, accuracies, samples/s, ETA) on stderr, and
        within an epoch that runs over 2 s an updating batch line; False: nothing; a
        callable: called with a ``npdistill.progress.ProgressEvent`` per batch (stage
        "epoch E/N", figures: loss) and per epoch (stage "train", figures: loss,
        train_accuracy, val_accuracy), nothing printed
    loss_scale : multiplies the loss gradient (the loss reported is unscaled). The
        cross-entropy at T has gradient (p - q) / T w.r.t. the logits, so at high T
        training crawls: ``distill`` passes loss_scale = T, which gives the
        parameter gradients the size they have at T = 1. (Hinton et al.'s T^2
        diverged with the paper's lr of 0.1 on MNIST-like data: a dead net.)
        With a ``penalty`` it multiplies the gradient of loss + penalty.
    logits_lr_factor : multiplies the learning rate of the layer that outputs the logits
        (its weights and bias) and of no other. At temperature T, ``distill`` passes
        T ** 2: that is SGD on the net whose logits layer is T times smaller, trained at
        T = 1 (softmax(z / T) with z = T z'), so the other layers get gradients of their
        T = 1 size once the logits have grown T-fold, and nothing else is scaled. (A
        loss_scale of T scales every layer's gradient by T: it diverged at T >= 20 with
        lr 0.1 on MNIST.)
    batch_transform : optional hook ``(model, x, y, rng) -> (x, y)`` applied to every
        training batch before the forward pass (adversarial training replaces part
        of the batch with adversarial examples). ``rng`` is the epoch's Generator, so
        a seeded run stays reproducible.
    penalty : optional hook ``(model, logits, dlogits, temperature) -> float``, an
        extra loss term: called after the training forward pass with the loss
        gradient w.r.t. the logits, it runs the backward pass itself, leaves in
        ``model.grads`` the gradient of loss + penalty and returns the penalty's
        value (input-gradient regularization needs the backward pass's
        intermediate gradients, so it cannot be a term added afterwards).
        Both hooks are recorded in the model's training config via their
        ``config()`` method when they have one (else their name).

    With the "cuda" backend (``npdistill.kernels.use("cuda")``) and no hooks, the
    epochs run on the GPU (npdistill.cuda.trainer.DeviceTrainer): the data is
    uploaded once and parameters, activations and gradients stay on the device;
    the model and the optimizer come back after every epoch. A diverging loss is
    then caught at the end of its epoch. With hooks (they work on host arrays) the
    loop stays on the host and the kernels move their arrays to the device and back.

    Divergence: a batch whose logits are not finite or whose loss exceeds
    DIVERGED_LOSS_FACTOR * log K, or an epoch that ends with parameters that are not
    finite or whose last batch then has such a loss, stops training with
    ``TrainingDiverged``: the model is put back to its parameters before that epoch,
    and the checkpoint of the last good epoch stays as it was (a non-finite model is
    never written: ``write_archive`` refuses it).

    Returns
    -------
    model, history : history is a dict of per-epoch lists: "loss",
        "train_accuracy", "val_accuracy" (None without validation), "lr", "seconds",
        and "penalty" (mean per-sample penalty; None without one)
    """
    run = _resolve(model, data, temperature=temperature, epochs=epochs, seed=seed,
                   loss_scale=loss_scale, logits_lr_factor=logits_lr_factor,
                   batch_transform=batch_transform, penalty=penalty,
                   given={"lr": lr, "momentum": momentum, "batch_size": batch_size,
                          "decay_every": decay_every, "decay_factor": decay_factor})
    if validation is not None:
        validation = _check_data(model, validation, "validation")
    logits = model.logits_layer
    optimizer = SGD(run.lr, run.momentum, run.decay_every, run.decay_factor,
                    {f"{logits}.{name}": run.logits_lr_factor
                     for name in model.layers[logits].params})
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = check_output_dir(checkpoint_dir, "checkpoint_dir") / CHECKPOINT_NAME
    check_progress(progress)
    if checkpoint is not None:
        removed = remove_stale_temporaries(checkpoint.parent)     # a killed run's, if any
        if removed and progress is True:
            print(removed_note(removed, checkpoint.parent), file=sys.stderr)
    start_epoch, history = _start(model, optimizer, checkpoint, run.config, progress is True)
    if start_epoch > epochs:
        raise ValueError(f"checkpoint_dir holds a checkpoint after epoch {start_epoch}, more "
                         f"than epochs={epochs}: pass epochs >= {start_epoch} to resume it, or "
                         f"another checkpoint_dir")
    device = None if run.hooked else device_trainer(model, optimizer, run.x, run.y)
    predict = model.predict if device is None else device.passes.predict
    epoch_seconds = []
    for epoch in range(start_epoch, epochs):
        began = time.perf_counter()
        rng = np.random.default_rng([seed, epoch])
        model.set_rng(rng)
        order = rng.permutation(len(run.x))
        sums = _epoch(model, optimizer, run, device, order, (epoch, epochs), rng, progress,
                      checkpoint)
        epoch_seconds.append(time.perf_counter() - began)
        val_acc = None if validation is None else \
            float((predict(validation[0]) == _hard(validation[1])).mean())
        _record(history, run, sums, val_acc, optimizer.lr_at(epoch), epoch_seconds[-1])
        _report(progress, history, epoch, epochs, len(run.x), epoch_seconds)
        if checkpoint is not None:
            _save_checkpoint(model, optimizer, checkpoint, run.config, epoch + 1, history)
    model.metadata["training_temperature"] = float(temperature)
    model.metadata["training"] = {**run.config, "epochs": int(epochs)}
    return model, history


@dataclass(frozen=True)
class _Run:
    """A training run's settings, resolved and checked, and its data."""
    x: np.ndarray
    y: np.ndarray
    temperature: float
    loss_scale: float
    logits_lr_factor: float
    batch_size: int
    lr: float
    momentum: float
    decay_every: int
    decay_factor: float
    batch_transform: object
    penalty: object
    config: dict             # what checkpoints and the model's metadata record
    diverged_loss: float     # a batch loss above this stops the run (DIVERGED_LOSS_FACTOR)

    @property
    def hooked(self):
        """Hooks work on host arrays: such a run trains on the host whatever the backend."""
        return self.batch_transform is not None or self.penalty is not None


def _resolve(model, data, *, temperature, epochs, seed, loss_scale, logits_lr_factor,
             batch_transform, penalty, given):
    """Check the arguments and fill the hyper-parameters the caller left None with the
    model's training defaults (the paper's)."""
    defaults = {**_FALLBACK_DEFAULTS, **model.metadata.get("training_defaults", {})}
    hp = {k: (defaults[k] if v is None else v) for k, v in given.items()}
    check_positive(epochs, "epochs", integer=True)
    check_positive(hp["batch_size"], "batch_size", integer=True)
    check_positive(temperature, "temperature")
    check_positive(loss_scale, "loss_scale")
    check_positive(logits_lr_factor, "logits_lr_factor")
    if check_seed(seed) is None:
        raise TypeError("seed must be a non-negative integer, got None (training is always seeded)")
    x, y = _check_data(model, data, "data")
    for name, hook in (("batch_transform", batch_transform), ("penalty", penalty)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{name} must be callable, got {type(hook).__name__}")
    config = {"temperature": float(temperature), "seed": int(seed), **hp,
              "loss_scale": float(loss_scale), "logits_lr_factor": float(logits_lr_factor),
              "batch_transform": describe(batch_transform),
              "penalty": describe(penalty),
              "dtype": model.dtype.name, "n_train": len(x), "data_checksum": data_checksum(x, y)}
    return _Run(x=x, y=y, temperature=temperature, loss_scale=loss_scale,
                logits_lr_factor=float(logits_lr_factor),
                batch_size=int(hp["batch_size"]), lr=hp["lr"], momentum=hp["momentum"],
                decay_every=hp["decay_every"], decay_factor=hp["decay_factor"],
                batch_transform=batch_transform, penalty=penalty, config=config,
                diverged_loss=_divergence_bar(model, x, y, temperature, int(hp["batch_size"])))


def _divergence_bar(model, x, y, temperature, batch_size):
    """The batch loss above which training has diverged: DIVERGED_LOSS_FACTOR x log K, or
    ten times the loss the model starts from on the first batch where that is more (a
    valid net with logits of 1e4 starts far above log K: it has not diverged)."""
    bar = DIVERGED_LOSS_FACTOR * np.log(model.num_classes)
    logits = model.forward(x[:batch_size])
    if np.isfinite(logits).all():
        bar = max(bar, 10 * cross_entropy(logits, y[:batch_size], temperature)[0])
    return bar


def _start(model, optimizer, checkpoint, config, progress):
    """(first epoch, history): a fresh history, or the checkpoint's after resuming from it."""
    history = {"loss": [], "train_accuracy": [], "val_accuracy": [], "lr": [], "seconds": [],
               "penalty": []}
    if checkpoint is None or not checkpoint.exists():
        return 0, history
    start_epoch, history = _resume(model, optimizer, checkpoint, config)
    history.setdefault("penalty", [None] * start_epoch)     # checkpoints of 0.1
    if progress:
        print(f"resuming from {checkpoint} after epoch {start_epoch}", file=sys.stderr)
    return start_epoch, history


def _epoch(model, optimizer, run, device, order, epochs, rng, progress, checkpoint):
    """One epoch (``epochs``: (0-based index, count)) on the host or the device: its sums;
    a diverging epoch is undone and raised as TrainingDiverged."""
    epoch, total = epochs
    good = _snapshot(model, optimizer)
    try:
        if device is not None:
            return _device_epoch(device, model, run, order, epoch)
        batches = Progress(None if progress is True else progress, f"epoch {epoch + 1}/{total}",
                           -(-len(order) // run.batch_size), "batches", final_line=False)
        sums = _host_epoch(model, optimizer, run, order, epoch, rng, batches)
        batches.clear()
        return sums
    except _Diverged as diverged:
        _restore(model, optimizer, good)
        kept = checkpoint if checkpoint is not None and checkpoint.exists() else None
        raise TrainingDiverged(epoch + 1, diverged.where, diverged.loss, optimizer.lr_at(epoch),
                               kept) from None


class _Diverged(Exception):
    def __init__(self, where, loss):
        self.where, self.loss = where, loss


def _snapshot(model, optimizer):
    """Copies of the parameters and the momentum: what a diverged epoch is undone to."""
    return ({k: v.copy() for k, v in model.params.items()},
            {k: v.copy() for k, v in optimizer.velocity.items()})


def _restore(model, optimizer, snapshot):
    params, velocity = snapshot
    model.set_params(params)
    optimizer.velocity = velocity


def _check_loss(loss, run, where):
    if not np.isfinite(loss) or loss > run.diverged_loss:
        raise _Diverged(where, loss)


def _check_last_step(model, run, order):
    """The loss of the epoch's last batch again, after the epoch's last step: a step that
    blew the parameters up (finite or not) shows here, before a checkpoint is written."""
    if not all(np.isfinite(value).all() for value in model.params.values()):
        raise _Diverged("its last step made parameters non-finite", np.inf)
    idx = order[-run.batch_size:]
    logits = model.forward(run.x[idx])
    loss = cross_entropy(logits, run.y[idx], run.temperature)[0] \
        if np.isfinite(logits).all() else np.inf
    _check_loss(loss, run, "the loss of its last batch after its last step")


def _host_epoch(model, optimizer, run, order, epoch, rng, shown):
    """One pass over the data in ``order`` on the host: (loss sum, penalty sum, correct)."""
    loss_sum, penalty_sum, correct = 0.0, 0.0, 0
    for start in range(0, len(order), run.batch_size):
        idx = order[start:start + run.batch_size]
        x_batch, y_batch = run.x[idx], run.y[idx]
        if run.batch_transform is not None:
            x_batch, y_batch = transformed(run.batch_transform, model, x_batch, y_batch, rng)
        logits = model.forward(x_batch, training=True)
        where = f"batch {start // run.batch_size + 1}, samples {start}..{start + len(idx) - 1}"
        if not np.isfinite(logits).all():
            raise _Diverged(where, np.inf)
        loss, dlogits = cross_entropy(logits, y_batch, run.temperature)
        if run.penalty is None:
            if run.loss_scale != 1:
                dlogits *= dlogits.dtype.type(run.loss_scale)
            model.backward(dlogits, input_grad=False)
        else:
            value = penalty_value(run.penalty(model, logits, dlogits, run.temperature),
                                   where)
            if run.loss_scale != 1:
                for grad in model.grads.values():
                    grad *= grad.dtype.type(run.loss_scale)
            penalty_sum += value * len(idx)
            loss += value
        _check_loss(loss, run, where)
        optimizer.step(model.params, model.grads, epoch)
        loss_sum += loss * len(idx)
        correct += int((logits.argmax(axis=1) == _hard(y_batch)).sum())
        shown.update(start // run.batch_size + 1, loss=loss_sum / (start + len(idx)))
    _check_last_step(model, run, order)
    return loss_sum, penalty_sum, correct


def _device_epoch(device, model, run, order, epoch):
    """One pass on the device (placement's trainer), the model and optimizer brought back."""
    loss_sum, correct = device.epoch(order, run.batch_size, epoch, run.temperature,
                                     run.loss_scale)
    _check_loss(loss_sum / len(order), run, "its mean loss, measured at its end on the device")
    device.to_host()
    _check_last_step(model, run, order)
    return loss_sum, 0.0, correct


def _record(history, run, sums, val_acc, lr, seconds):
    loss_sum, penalty_sum, correct = sums
    n = len(run.x)
    for key, value in (("loss", loss_sum / n), ("train_accuracy", correct / n),
                       ("val_accuracy", val_acc), ("lr", lr), ("seconds", seconds),
                       ("penalty", penalty_sum / n if run.penalty is not None else None)):
        history[key].append(value)


def _report(progress, history, epoch, epochs, n, epoch_seconds):
    """One progress line (or event) for the epoch just recorded: loss, accuracies, rate,
    ETA."""
    if callable(progress) and not isinstance(progress, bool):
        progress(ProgressEvent("train", epoch + 1, epochs, "epochs", sum(epoch_seconds),
                               {key: history[key][-1] for key in
                                ("loss", "train_accuracy", "val_accuracy")}))
        return
    if not progress:
        return
    eta = np.median(epoch_seconds) * (epochs - epoch - 1)
    val_acc, penalty = history["val_accuracy"][-1], history["penalty"][-1]
    val = f"  val acc {val_acc:.2%}" if val_acc is not None else ""
    val += f"  penalty {penalty:.4g}" if penalty is not None else ""
    print(f"epoch {epoch + 1}/{epochs}  loss {history['loss'][-1]:.4f}  train acc "
          f"{history['train_accuracy'][-1]:.2%}{val}  {n / epoch_seconds[-1]:,.0f} samples/s  "
          f"ETA {format_seconds(eta)}", file=sys.stderr, flush=True)


def _hard(y):
    return y if y.ndim == 1 else y.argmax(axis=1)


def _check_data(model, data, name):
    x, y = check_pair(data, name)
    model.check_images(x, f"{name} x")
    check_targets(y, len(x), model.num_classes, f"{name} y")
    return x, y


def _save_checkpoint(model, optimizer, path, config, epochs_done, history):
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(model.params)
    arrays.update({f"velocity/{k}": v for k, v in optimizer.velocity.items()})
    write_archive(path, arrays, {"architecture": model.architecture(), "metadata": model.metadata,
                                 "checkpoint": {"config": config, "epochs_done": epochs_done,
                                                "history": history}}, what="checkpoint")


def _resume(model, optimizer, path, config):
    arrays, meta = read_archive(path)
    saved = meta.get("checkpoint")
    if saved is None:
        raise ValueError(f"{path}: a model file, not a training checkpoint")
    if meta["architecture"] != model.architecture():
        raise ValueError(f"{path}: checkpoint of a different architecture than the model given")
    recorded = {**_ADDED_LATER, **saved["config"]}
    differ = {k: (recorded.get(k), v) for k, v in config.items() if recorded.get(k) != v}
    if differ:
        details = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in differ.items())
        raise ValueError(f"{path}: cannot resume, the run differs from the checkpoint's: {details}")
    params = {k: v for k, v in arrays.items() if not k.startswith("velocity/")}
    restored = model_from_archive(params, meta, str(path))
    model.set_params(restored.params)
    optimizer.velocity = {k[len("velocity/"):]: v.copy() for k, v in arrays.items()
                          if k.startswith("velocity/")}
    return saved["epochs_done"], saved["history"]
