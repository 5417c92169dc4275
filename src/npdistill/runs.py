"""What the two reproductions (reproduce.py, reproduce_defenses.py) share: their data,
progress lines, and the cache that makes a run resumable — trained models and measures
saved under OUT and reused when their settings match.
"""
import json
import sys
import time

import numpy as np

from . import datasets
from ._files import remove_stale_temporaries, removed_note, write_text
from .nn.archive import read_archive, write_archive
from .nn.model import load_model
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


def remove_stale(progress, *folders):
    """Remove the temporary files that killed runs left in ``folders`` (_files), saying how
    many where there were any."""
    for folder in folders:
        removed = remove_stale_temporaries(folder)
        if removed:
            say(progress, removed_note(removed, folder))


def _task_done(progress, what):
    if isinstance(progress, RunProgress):
        progress.task_done(what)


def write_results(out_dir, results, table, draw, progress):
    """A reproduction's end: results.json, results.md (``table``) and its figures
    (``draw()``, which saves them and returns their paths) in ``out_dir``, one line said.
    Returns ``results``."""
    write_text(out_dir / "results.json", json.dumps(results, indent=1), "results")
    write_text(out_dir / "results.md", table, "results table")
    figures = draw()
    say(progress, f"wrote {out_dir / 'results.json'}, results.md and {len(figures)} figures "
                  f"in {results['seconds']:.0f} s")
    return results


def load_data(data_path, train_limit, download=False, loader=datasets.load_mnist):
    """((x_train, y_train), (x_test, y_test)) of ``loader`` (a datasets.load_* function),
    the training split cut to train_limit."""
    (x_train, y_train), test = loader(data_path, download=download)
    if train_limit is not None:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    return (x_train, y_train), test


def _trained(build, *deps):
    """A net task's work, wherever it runs: build(*deps), its time in its metadata."""
    began = time.perf_counter()
    model = build(*deps)
    model.metadata["train_seconds"] = time.perf_counter() - began
    return model


def _measured(measure, *deps):
    """A measure task's work, wherever it runs: (row, examples, seconds)."""
    began = time.perf_counter()
    row, examples = measure(*deps)
    return row, examples, time.perf_counter() - began


def _timed(piece, *args):
    """A piece of a split measure, wherever it runs: (its value, seconds)."""
    began = time.perf_counter()
    return piece(*args), time.perf_counter() - began


def _combined(combine, timed_pieces, *args):
    """A split measure's (row, examples, seconds): its pieces combined, their times summed."""
    row, examples = combine([value for value, _ in timed_pieces], *args)
    return row, examples, sum(seconds for _, seconds in timed_pieces)


def _reused(path, progress):
    say(progress, f"reusing {path}")
    _task_done(progress, path.name)


def read_cached(path, read, redo, tell, heal=True):
    """read(path), or None where there is no file; a file that fails its checks (a
    ValueError: damaged, truncated) is moved aside to <name>.damaged, ``tell`` told so and
    None returned (``heal``; else the error is raised). ``redo``: what the run does
    instead. The run cache of the reproductions and of ``evaluate(cache=)``."""
    if not path.exists():
        return None
    try:
        return read(path)
    except ValueError as exc:
        if not heal:
            raise ValueError(f"{exc}; a run without --no-recompute (heal=True) moves it "
                             f"aside and computes it again") from exc
        aside = path.with_name(path.name + ".damaged")
        path.replace(aside)
        tell(f"{path} is damaged ({exc}): moved to {aside.name}, {redo}")
        return None


def _saved_model(path, key, progress, heal=True):
    """The model saved at ``path`` with training settings ``key``, or None (a damaged
    file: see read_cached)."""
    model = read_cached(path, load_model, "retraining", lambda m: say(progress, m), heal)
    if model is None:
        return None
    if model.metadata.get("reproduce") == key:
        _reused(path, progress)
        return model
    say(progress, f"{path} was trained with other settings: retraining")
    return None


def _save_model(path, key, model, progress):
    model.metadata["reproduce"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    say(progress, f"trained {path.name} in {model.metadata['train_seconds']:.0f} s")
    return model


def _saved_measure(path, key, progress, heal=True):
    """(row, examples, seconds) saved at ``path`` with ``key``, or None (a damaged file:
    see read_cached)."""
    saved = read_cached(path, read_archive, "measuring again", lambda m: say(progress, m),
                        heal)
    if saved is None:
        return None
    arrays, meta = saved
    if meta.get("key") != key:
        say(progress, f"{path} was measured with other settings: measuring again")
        return None
    examples = {name: stacked_example(arrays[f"{name}.clean"], arrays[f"{name}.adversarial"],
                                      about["target"], about["success"])
                for name, about in meta["examples"].items()}
    _reused(path, progress)
    return meta["row"], examples, meta["seconds"]


def _save_measure(path, key, row, examples, seconds):
    arrays = {}
    for name, (clean, adversarial, _, _) in examples.items():
        arrays[f"{name}.clean"], arrays[f"{name}.adversarial"] = clean, adversarial
    header = {"key": key, "row": row, "seconds": seconds,
              "examples": {name: {"target": target, "success": success}
                           for name, (_, _, target, success) in examples.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_archive(path, arrays, header, what="measure")
    return row, examples, seconds


class Runner:
    """Runs a reproduction's tasks — each net and each measure, saved under OUT and reused
    when saved with the same key — one after another (``client=None``), or as a Dask task
    graph on ``client``'s workers (npdistill.distributed).

    ``model(...)`` and ``measure(...)`` return a handle at once (on Dask, a future: the
    task is running); ``value(handle)`` waits for it and the first time saves it here, on
    the client, with the same atomic writes as a serial run: workers need no shared
    filesystem, and a run cut off resumes from what was saved. ``worker_progress`` is the
    progress= for the library calls inside a task (nothing is printed on workers).
    ``heal``: a saved net or measure that fails its checks is moved aside to
    <name>.damaged and computed again (False: the run stops with the error). On Dask the
    run outlives its workers (npdistill.distributed: what a task needs is shipped so that
    the scheduler can make it again, and a lost worker's tasks rerun); a task's future is
    held until its value is saved, and ``distributed.WorkLost`` (after ``gone_after``
    seconds with no worker, default ``distributed.GONE_AFTER``) stops a run that cannot go
    on, with everything saved so far kept for a rerun to resume from.
    """

    def __init__(self, progress, client=None, heal=True, gone_after=None):
        self.progress, self.client, self.heal = progress, client, heal
        self.worker_progress = inner(progress) if client is None else False
        self._pending, self._values, self._shipped = {}, {}, {}
        if client is not None:
            from .distributed import GONE_AFTER, Watch
            self._watch = Watch(client, GONE_AFTER if gone_after is None else gone_after)

    def _is_future(self, handle):
        return self.client is not None and type(handle).__name__ == "Future"

    def model(self, path, key, build, *deps):
        """The model ``build(*deps)`` saved at ``path``. ``key``: its training settings, or
        a function of the deps' values giving them (a student's names its teacher)."""
        if not any(self._is_future(d) for d in deps):
            ready = key(*deps) if callable(key) else key
            saved = _saved_model(path, ready, self.progress, self.heal)
            if saved is not None:
                return saved
        return self._run(("model", path, key, deps), _trained, build, deps)

    def measure(self, path, key, measure, *deps):
        """The (row, examples, seconds) of ``measure(*deps)`` saved at ``path`` with ``key``
        (a JSON-ready dict). ``measure`` returns (row, examples): a JSON-ready dict and
        {attack: (clean, adversarial, targets or None, successes)}; both go into one .npz
        archive (the images as arrays, the rest as its JSON header)."""
        key, saved = self._saved_measure(path, key)
        if saved is not None:
            return saved
        return self._run(("measure", path, key, deps), _measured, measure, deps)

    def _saved_measure(self, path, key):
        """(key as JSON gives it back, the measure saved at ``path`` with it or None)."""
        key = json.loads(json.dumps(key))
        return key, _saved_measure(path, key, self.progress, self.heal)

    def split_measure(self, path, key, piece, combine, count, args, piece_progress=False):
        """A measure made of ``count`` independent pieces (a CW attack's batches of images):
        ``piece(*args, i, piece_progress)`` computes piece i, ``combine(pieces, *args)``
        gives (row, examples) from them in order. Here the pieces run one after another; on
        Dask side by side, then a task that combines them: the same pieces, the same answer.
        Saved and reused as ``measure``."""
        if self.client is None:
            return self.measure(path, key, _pieces_here, piece, combine, count, args,
                                piece_progress)
        key, saved = self._saved_measure(path, key)
        if saved is not None:
            return saved
        shipped = [d if self._is_future(d) else self._ship(d) for d in args]
        pieces = [self.client.submit(_timed, self._ship(piece), *shipped, i, False, pure=False)
                  for i in range(count)]
        future = self.client.submit(_combined, self._ship(combine), pieces, *shipped,
                                    pure=False)
        # the pieces held too: were the combined value lost with a worker, it is made again
        self._pending[future.key] = (("measure", path, key, args), [future, *pieces])
        return future

    def _run(self, task, wrapper, work, deps):
        if self.client is None:
            return self._finish(task, wrapper(work, *deps))
        future = self.client.submit(wrapper, self._ship(work),
                                    *(d if self._is_future(d) else self._ship(d) for d in deps),
                                    pure=False)
        self._pending[future.key] = (task, future)
        return future

    def _ship(self, obj):
        """``obj`` (a task's function with the data it holds, a model, the test set...) sent
        to the cluster once, however many tasks use it: a future standing for it."""
        if id(obj) not in self._shipped:
            from .distributed import ship
            self._shipped[id(obj)] = (obj, ship(self.client, obj))
        return self._shipped[id(obj)][1]

    def as_ready(self, handles):
        """(name, value) for each of ``handles`` ({name: handle}): in their order here; on
        Dask in the order their tasks finish, each saved as it comes back."""
        futures = {}
        for name, handle in handles.items():
            if self._is_future(handle):
                futures.setdefault(handle.key, (handle, []))[1].append(name)
            else:
                yield name, handle
        if futures:
            for future in self._watch.completed([f for f, _ in futures.values()]):
                for name in futures[future.key][1]:
                    yield name, self.value(future)

    def value(self, handle):
        """What the handle stands for (waiting for it on Dask, saving it the first time)."""
        if not self._is_future(handle):
            return handle
        if handle.key not in self._values:
            task, _ = self._pending[handle.key]        # held until saved: a rerun needs it
            self._values[handle.key] = self._finish(task, self._watch.result(handle))
            del self._pending[handle.key]
        return self._values[handle.key]

    def _finish(self, task, result):
        kind, path, key, deps = task
        if kind == "model":
            if callable(key):
                key = key(*(self.value(d) for d in deps))
            value = _save_model(path, key, result, self.progress)
        else:
            value = _save_measure(path, key, *result)
        _task_done(self.progress, path.name)
        return value


def _pieces_here(piece, combine, count, args, progress):
    """A split measure run here: its pieces one after another, combined."""
    return combine([piece(*args, i, progress) for i in range(count)], *args)


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
