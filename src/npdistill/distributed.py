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
"""
import contextlib
import os

import numpy as np

from .attacks.result import AttackResult
from .progress import Progress

# keyword options of the attacks that hold one entry per image (sharded with x)
PER_IMAGE = ("search_domain",)


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
    pre-spawn environment — where this process's own variables win, and Dask writes that
    environment into this process (OMP_NUM_THREADS=1 ...) when it spawns: so both are set
    while the cluster starts, and this process's restored after."""
    import dask

    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **values}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn}):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
        with distributed.Client(scheduler) as client:
            say(f"Dask scheduler {scheduler}: {len(client.nthreads())} workers")
            yield client
        return
    # the cores shared out (more threads than cores: OpenMP's spinning costs 5-10x)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with _spawn_environ(worker_environ(threads, backend)), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                     processes=True) as local, \
            distributed.Client(local) as client:
        say(f"Dask: {workers} worker processes, one task at a time each with {threads} "
            f"BLAS/OpenMP threads; dashboard {local.dashboard_link}")
        yield client


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
    Returns one AttackResult, as the direct call would.
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
    model_on_cluster = client.scatter(model, broadcast=True, hash=False)   # a fresh key
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
    for future in distributed.as_completed(futures):
        done += sizes[future.key]
        shown.update(done)
    return concatenate(client.gather(futures))
