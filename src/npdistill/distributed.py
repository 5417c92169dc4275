"""Large evaluations on Dask (``dask.distributed``), from one machine to a cluster.

Dask is optional (``pip install "npdistill[distributed]"``); nothing here imports it until
asked to run on it. ``cluster(workers=N)`` starts a local cluster whose worker processes
share the cores (each with its share of BLAS/OpenMP threads, this process's backend), or
``cluster(scheduler=address)`` joins a running one: what ``--workers`` and ``--scheduler``
of the command line do.

``map_attack(attack, model, x, y, ..., client=client)`` splits the images into shards,
runs ``attack`` on each shard on the cluster's workers (the model is sent once) and
returns one ``AttackResult`` equal to the unsharded call: every attack of
``npdistill.attacks`` treats each image on its own (PGD's random start is the exception:
it is drawn per call, so a sharded PGD equals the unsharded one in distribution only).
Equal in the arithmetic's last bits only where the products do not depend on how many
images a batch holds: OpenBLAS sums a product of few rows in another order than one of
many (NumPy makes a single row a matrix-vector product), so an iterative attack such as
CW on a real net can end 1e-4 apart (measured: mean L2 4.3224 vs 4.3232 on the MNIST net).
Where the answer must not depend on the cluster, cut the images in fixed batches, as the
reproduction does with its CW images (``Settings.cw_batch``).

A run outlives its workers. What a task needs (the data, a model, the task's function) is
sent by ``ship`` as a task of its own whose recipe the scheduler keeps, not scattered as
bare data: when a worker dies, the scheduler makes again, elsewhere, whatever it held
(shipped inputs and computed results alike) and reruns the tasks it was running — every
task here is pure and its result is saved only by the client, so a rerun is safe; a
LocalCluster's nannies start a new worker in the dead one's place. ``cluster`` says each
unexpected loss in one line. ``Watch`` waits for results and turns what cannot be
recovered into one ``WorkLost`` error: no worker for ``gone_after`` seconds, a task that
killed every worker it ran on (Dask's ``allowed-failures``), the scheduler lost.
"""
import contextlib
import logging
import os
import time

import numpy as np

from .attacks.result import AttackResult
from .progress import Progress

# keyword options of the attacks that hold one entry per image (sharded with x)
PER_IMAGE = ("search_domain",)
# seconds a run waits with no worker at all before it gives up, and between its checks
GONE_AFTER, POLL = 120.0, 1.0


class WorkLost(RuntimeError):
    """The cluster cannot finish the work: every worker gone for good, a task that killed
    each worker it ran on, or the scheduler lost. What the client saved stays saved."""


def require_dask():
    """dask.distributed, or an ImportError saying what to install."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError('running on Dask needs dask.distributed: pip install '
                          '"npdistill[distributed]" (or pip install "dask[distributed]")') from exc
    return distributed


def worker_environ(threads, backend=None):
    """Environment of a worker process: ``backend`` (where given), and ``threads`` BLAS and
    OpenMP threads (OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=threads): the cores shared out.
    The thread count is not part of the arithmetic (kernels/reference/gemm.py): a task gives
    bit for bit what a serial run on any number of threads gives."""
    environ = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads)}
    return {**environ, "NPDISTILL_BACKEND": backend} if backend else environ


@contextlib.contextmanager
def _spawn_environ(values):
    """``values`` in the environment Dask's nannies give the worker processes they spawn.
    They must be set before a worker imports numpy (Dask's env= lands later), through its
    pre-spawn environment — where this process's own variables win. Dask writes into this
    process's environment (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, PYTHONHASHSEED ...)
    each time a nanny spawns a worker, at the start or to replace a lost one: so ``values``
    are set here while the cluster lives, and the whole environment is put back as it was
    after (left at one thread, a subprocess this process starts later - a notebook kernel,
    a CLI run - would run its kernels on one core)."""
    import dask

    spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **values}
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn}):
            yield
    finally:
        if dict(os.environ) != saved:
            os.environ.clear()
            os.environ.update(saved)


@contextlib.contextmanager
def cluster(workers=None, scheduler=None, *, backend=None, say=print):
    """A Dask client: on a LocalCluster of ``workers`` processes sharing this machine's
    cores, running ``backend`` (None: each worker's default, NPDISTILL_BACKEND or the
    fastest), or on the running cluster at ``scheduler`` (an address); None where neither
    is given (a serial run). ``say`` gets one line on what it started. An ImportError says
    what to install where dask.distributed is missing."""
    if workers is None and scheduler is None:
        yield None
        return
    distributed = require_dask()
    if scheduler is not None:
        with distributed.Client(scheduler) as client, _saying_losses(client, say):
            say(f"Dask scheduler {scheduler}: {len(client.nthreads())} workers")
            yield client
        return
    # the cores shared out (more threads than cores: OpenMP's spinning costs 5-10x)
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Dask's own log lines (a lost worker's, its nanny's restart) are silenced: the one that
    # matters is said here, and what cannot be recovered is raised as WorkLost
    with _spawn_environ(worker_environ(threads, backend)), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     silence_logs=logging.CRITICAL) as local, \
            distributed.Client(local) as client, _saying_losses(client, say):
        say(f"Dask: {workers} worker processes, one task at a time each with {threads} "
            f"BLAS/OpenMP threads; dashboard {local.dashboard_link}")
        yield client


@contextlib.contextmanager
def _saying_losses(client, say):
    """``say`` one line for each worker the cluster loses unexpectedly while the block runs
    (a closing cluster's own removals are expected, and not said)."""
    def on_event(event):
        _, message = event
        if message.get("action") == "remove-worker" and not message.get("expected"):
            # a shipped input (ship: a _held task) is not work the user sees as a task
            running = [k for k in message.get("processing-tasks", ())
                       if not str(k).startswith("_held-")]
            held = len(message.get("lost-computed-tasks", ()))
            say(f"Dask worker {message.get('worker')} lost: {len(running)} task(s) it was "
                f"running start again elsewhere, {held} value(s) it held are made again")

    client.subscribe_topic("all", on_event)
    try:
        yield
    finally:
        client.unsubscribe_topic("all")


def _held(obj):
    """A shipped object's task: the object itself (see ``ship``)."""
    return obj


def ship(client, obj):
    """``obj`` on ``client``'s cluster: a future for a task that returns it. Unlike data
    scattered to one worker, it survives the loss of any worker: the scheduler keeps the
    task's recipe (``obj``, pickled once) and makes it again where it is needed."""
    import dask

    # the object travels inside its task on purpose: that is what makes it recoverable
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "64GiB"}):
        return client.submit(_held, obj, pure=False)


class Watch:
    """Waits for futures on ``client`` while keeping an eye on the cluster: raises
    ``WorkLost`` when no worker has been there for ``gone_after`` seconds (a lost worker
    that comes back, or a new one, lets the work go on), and in place of Dask's errors for
    work it cannot recover (a task that killed its workers, a cancelled future)."""

    def __init__(self, client, gone_after=GONE_AFTER):
        self.client, self.gone_after, self._gone_since = client, float(gone_after), None

    def _check(self):
        if self.client.nthreads():
            self._gone_since = None
        elif self._gone_since is None:
            self._gone_since = time.monotonic()
        elif time.monotonic() - self._gone_since > self.gone_after:
            raise WorkLost(f"every Dask worker is gone and none came back within "
                           f"{self.gone_after:.0f} s")

    def result(self, future):
        """The future's result, once its task has run (again, if need be)."""
        (done,) = self.completed([future])
        distributed = require_dask()
        try:
            return done.result()
        except distributed.KilledWorker as exc:
            raise WorkLost(f"task {exc.task} killed the {exc.allowed_failures + 1} workers that "
                           f"ran it, one after another (out of memory?)") from None
        except distributed.client.FutureCancelledError as exc:
            raise WorkLost(f"the Dask scheduler dropped a task ({exc})") from None

    def completed(self, futures):
        """Each of ``futures`` as its task finishes (an error included)."""
        distributed = require_dask()
        waiting = list(futures)
        while waiting:
            try:
                done, _ = distributed.wait(waiting, timeout=POLL, return_when="FIRST_COMPLETED")
            except TimeoutError:
                self._check()
                continue
            for future in [f for f in waiting if f in done]:
                waiting.remove(future)
                yield future


def concatenate(results):
    """One AttackResult of several, in order (the shards of one evaluation)."""
    results = list(results)
    if not results:
        raise ValueError("concatenate needs at least one AttackResult")
    targets = [r.target for r in results]
    if any(t is None for t in targets) and not all(t is None for t in targets):
        raise ValueError("cannot concatenate targeted and untargeted results")
    join = lambda name: np.concatenate([getattr(r, name) for r in results])   # noqa: E731
    return AttackResult(x_adv=join("x_adv"), success=join("success"),
                        iterations=join("iterations"), l0=join("l0"), l2=join("l2"),
                        linf=join("linf"), target=None if targets[0] is None else join("target"))


def _shard(attack, model, x, y, target, options):
    goal = {"target": target} if target is not None else {}
    return attack(model, x, y, **goal, **options)


def map_attack(attack, model, x, y=None, *, target=None, client=None, shards=None,
               progress=None, **options):
    """``attack(model, x, y, target=target, **options)`` run shard by shard on Dask.

    client : a ``distributed.Client`` (default: the current one); shards : how many
        pieces (default: the cluster's worker threads, at most one image each);
    progress : for the shards as they finish (True, False, None, callable; see
        npdistill.progress). The attack itself runs with progress=False on the workers.
    Returns one AttackResult, as the direct call would -- except for an attack's random
    draws (PGD's random start, APGD's, Square's), which each shard makes from ``seed`` for
    its own images: the examples then depend on the shards (``evaluate`` fixes them, so
    its numbers do not depend on the cluster).
    """
    if not callable(attack):
        raise TypeError(f"attack must be an attack function (e.g. npdistill.attacks.fgsm), "
                        f"got {type(attack).__name__}")
    distributed = require_dask()
    client = distributed.get_client() if client is None else client
    if shards is None:
        shards = sum(client.nthreads().values())
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise ValueError(f"shards must be a positive integer, got {shards!r}")
    pieces = [idx for idx in np.array_split(np.arange(len(x)), min(int(shards), len(x))) if len(idx)]
    model_on_cluster = ship(client, model)
    futures, sizes = [], {}
    for idx in pieces:
        options_here = {k: (v[idx] if k in PER_IMAGE and v is not None else v)
                        for k, v in options.items()}
        futures.append(client.submit(
            _shard, attack, model_on_cluster, x[idx], None if y is None else np.asarray(y)[idx],
            None if target is None else np.asarray(target)[idx],
            {**options_here, "progress": False}, pure=False))
        sizes[futures[-1].key] = len(idx)
    shown = Progress(progress, getattr(attack, "__name__", "attack"), len(x), "images")
    done = 0
    watch = Watch(client)
    for future in watch.completed(futures):
        done += sizes[future.key]
        shown.update(done)
    return concatenate(watch.result(future) for future in futures)
