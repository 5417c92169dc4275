"""What the two reproductions (reproduce.py, reproduce_defenses.py) share: their data,
progress lines, and the cache that makes a run resumable — trained models and measures
saved under OUT and reused when their settings match.
"""
import json
import sys
import time

import numpy as np

from . import datasets
from .nn.model import load_model, read_archive, write_archive
from .progress import Progress, check_progress


class RunProgress:
    """A reproduction's progress: its lines (progress=True) or a user's callable, and its
    tasks (every net and measure, trained or reused) counted as stage "reproduce" with
    an overall rate and ETA (from the tasks done so far)."""

    def __init__(self, progress, tasks):
        self.inner = check_progress(progress)     # what train and the attacks are given
        self.tasks = Progress(progress, "reproduce", tasks, "tasks")
        self.done = 0

    def __bool__(self):
        return self.inner is True

    def task_done(self, what):
        self.done += 1
        self.tasks.update(self.done, last=what)


def inner(progress):
    """The progress= to give the library's own calls inside a reproduction."""
    return progress.inner if isinstance(progress, RunProgress) else progress


def say(progress, message):
    if progress is True or (isinstance(progress, RunProgress) and progress):
        print(f"reproduce: {message}", file=sys.stderr, flush=True)


def _task_done(progress, what):
    if isinstance(progress, RunProgress):
        progress.task_done(what)


def load_data(data_path, train_limit, download=False):
    """MNIST ((x_train, y_train), (x_test, y_test)), the training split cut to train_limit."""
    (x_train, y_train), test = datasets.load_mnist(data_path, download=download)
    if train_limit is not None:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    return (x_train, y_train), test


def cached_model(path, key, build, progress):
    """Reuse a model saved with the same training settings, else build and save it."""
    if path.exists():
        model = load_model(path)
        if model.metadata.get("reproduce") == key:
            say(progress, f"reusing {path}")
            _task_done(progress, path.name)
            return model
        say(progress, f"{path} was trained with other settings: retraining")
    began = time.perf_counter()
    model = build()
    model.metadata["reproduce"] = key
    model.metadata["train_seconds"] = time.perf_counter() - began
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    say(progress, f"trained {path.name} in {time.perf_counter() - began:.0f} s")
    _task_done(progress, path.name)
    return model


def cached_measure(path, key, measure, progress):
    """Reuse a measure saved with the same key, else run ``measure()`` and save it.

    ``measure()`` returns (row, examples): a JSON-ready dict and {attack: (clean,
    adversarial, targets or None, successes)}, the first few attacks stacked.
    Both go into one .npz archive (the images as arrays, the rest as its JSON
    header), so an interrupted run loses at most the measure it was taking.
    """
    key = json.loads(json.dumps(key))
    if path.exists():
        arrays, meta = read_archive(path)
        if meta.get("key") == key:
            say(progress, f"reusing {path}")
            _task_done(progress, path.name)
            examples = {name: stacked_example(arrays[f"{name}.clean"], arrays[f"{name}.adversarial"],
                                       about["target"], about["success"])
                        for name, about in meta["examples"].items()}
            return meta["row"], examples, meta["seconds"]
        say(progress, f"{path} was measured with other settings: measuring again")
    began = time.perf_counter()
    row, examples = measure()
    seconds = time.perf_counter() - began
    arrays = {}
    for name, (clean, adversarial, _, _) in examples.items():
        arrays[f"{name}.clean"], arrays[f"{name}.adversarial"] = clean, adversarial
    header = {"key": key, "row": row, "seconds": seconds,
              "examples": {name: {"target": target, "success": success}
                           for name, (_, _, target, success) in examples.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_archive(path, arrays, header)
    _task_done(progress, path.name)
    return row, examples, seconds


def stacked_example(clean, adversarial, target, success):
    """An example as saved, stacked as the reproductions keep several (archives written
    before several were kept hold one image, one target and one success)."""
    if np.ndim(success) == 0:
        clean, adversarial, success = clean[None], adversarial[None], [success]
        target = None if target is None else [target]
    return clean, adversarial, target, success


def percent(value, digits=2):
    """A share as a percentage for the results tables: "-" for None, and a published upper
    bound {"below": v} as "< v%"."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return f"< {100 * value['below']:.{digits}f}%"
    return f"{100 * value:.{digits}f}%"
