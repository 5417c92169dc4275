"""Large evaluations on Dask (``dask.distributed``), from one machine to a cluster.

Dask is optional (``pip install "npdistill[distributed]"``); nothing here imports it until
asked to run on it.

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
