"""Dask: sharded attacks equal the direct call (dask.distributed is an optional extra)."""
import os

import numpy as np
import pytest

import npdistill as nd
from npdistill import distributed as nd_distributed

from .optional import require

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


@pytest.mark.parametrize("attack, goal, options", [
    (nd.attacks.fgsm, "y", {"eps": 0.3}),
    (nd.attacks.bim, "target", {"eps": 0.3, "steps": 3}),
    (nd.attacks.jsma, "target", {"gamma": 0.3, "search_domain": True}),
    (nd.attacks.cw_l2, "target", {"binary_search_steps": 2, "max_iterations": 30}),
])
def test_map_attack_equals_the_direct_call(client, toy, attack, goal, options):
    model, x, y, target = toy
    x = x[:9]
    labels = {"y": y[:9]} if goal == "y" else {"target": target[:9]}
    if options.get("search_domain"):
        options = {**options, "search_domain": x < 0.9}
    direct = attack(model, x, **labels, **options)
    events = []
    sharded = nd_distributed.map_attack(attack, model, x, **labels, client=client, shards=4,
                                        progress=events.append, **options)
    np.testing.assert_array_equal(sharded.x_adv, direct.x_adv)
    for name in ("success", "iterations", "l0", "l2", "linf"):
        np.testing.assert_array_equal(getattr(sharded, name), getattr(direct, name), name)
    if goal == "target":
        np.testing.assert_array_equal(sharded.target, direct.target)
    assert events[-1].done == events[-1].total == 9


def test_map_attack_takes_a_live_torch_module(client, toy):
    """A TorchModel travels to the workers (pickled without its autograd graph) and the
    shards together are the direct call."""
    require("torch")
    model, x, y, _ = toy
    tm = nd.interop.TorchModel(nd.interop.to_torch(model))
    direct = nd.attacks.bim(tm, x[:9], y[:9], eps=0.3, steps=5)
    sharded = nd_distributed.map_attack(nd.attacks.bim, tm, x[:9], y[:9], client=client,
                                        shards=3, eps=0.3, steps=5)
    np.testing.assert_array_equal(sharded.x_adv, direct.x_adv)
    np.testing.assert_array_equal(sharded.success, direct.success)
    assert direct.success.any()


def test_evaluate_on_dask_is_evaluate_here(client, toy):
    """The same pieces, here or on the workers: the same record, random starts included."""
    model, x, y, _ = toy
    attacks = [("pgd", {"steps": 5}), ("square", {"queries": 50})]
    here = nd.evaluate(model, x, y, attacks=attacks, eps=(0.2, 0.3), chunk=15)
    there = nd.evaluate(model, x, y, attacks=attacks, eps=(0.2, 0.3), chunk=15, client=client)
    np.testing.assert_array_equal(there.broken, here.broken)
    assert here.broken.any()


def test_map_attack_raises_the_attacks_own_errors(client, toy):
    model, x, y, _ = toy
    with pytest.raises(ValueError, match="x must lie in the clip box"):
        nd_distributed.map_attack(nd.attacks.fgsm, model, x * 2, y, client=client)


def test_concatenate_keeps_the_order_and_refuses_a_mix(toy):
    model, x, y, target = toy
    parts = [nd.attacks.fgsm(model, x[i:i + 3], y[i:i + 3]) for i in (0, 3)]
    whole = nd_distributed.concatenate(parts)
    np.testing.assert_array_equal(whole.x_adv, nd.attacks.fgsm(model, x[:6], y[:6]).x_adv)
    with pytest.raises(ValueError, match="targeted and untargeted"):
        nd_distributed.concatenate([parts[0], nd.attacks.tgsm(model, x[:3], target=target[:3])])



def test_a_local_cluster_leaves_this_process_environment_as_it_was():
    before = dict(os.environ)
    with nd_distributed.cluster(workers=1, say=lambda line: None) as client:
        assert client.submit(os.environ.get, "OMP_NUM_THREADS", pure=False).result() == \
            str(os.cpu_count() or 1)
    assert dict(os.environ) == before


# --- a run outlives its workers (npdistill.runs.Runner on a LocalCluster) -----------------

def _slow_sum(data, i):
    """A measure task: a second's work on the shipped data."""
    import time
    time.sleep(1.0)
    return {"sum": float(data.sum()) + i}, {}


def _dies():
    """A task that kills the worker running it."""
    import os
    os._exit(3)


def _worker_pids(client):
    return sorted(client.run(__import__("os").getpid).values())


def _wait_until_running(client, count, deadline=60):
    import time
    stop = time.monotonic() + deadline
    while sum(len(keys) for keys in client.processing().values()) < count:
        assert time.monotonic() < stop, "the tasks never started"
        time.sleep(0.05)


def test_a_run_outlives_every_worker_killed_at_once(tmp_path):
    # both workers SIGKILLed while they run tasks: the shipped data and the tasks are made
    # again on the workers the nannies start, each loss said in one line
    import os
    import signal
    from npdistill.runs import Runner
    lines = []
    data = np.arange(10_000, dtype=np.float64)
    with nd_distributed.cluster(workers=2, say=lines.append) as client:
        runner = Runner(False, client)
        handles = {i: runner.measure(tmp_path / f"m{i}.npz", {"i": i}, _slow_sum, data, i)
                   for i in range(4)}
        _wait_until_running(client, 2)
        for pid in _worker_pids(client):
            os.kill(pid, signal.SIGKILL)
        rows = {i: row for i, (row, _, _) in runner.as_ready(handles)}
        assert len(client.nthreads()) == 2                       # the nannies restarted them
    assert rows == {i: {"sum": float(data.sum()) + i} for i in range(4)}
    lost = [line for line in lines if "lost" in line]
    assert len(lost) == 2 and all("start again elsewhere" in line for line in lost), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"m{i}.npz" for i in range(4)]


def test_no_worker_left_stops_the_run_with_one_error(tmp_path):
    from npdistill.runs import Runner
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        runner = Runner(False, client, gone_after=1)
        handle = runner.measure(tmp_path / "m.npz", {"i": 0}, _slow_sum, np.ones(3), 0)
        cluster.scale(0)                                          # and none comes back
        with pytest.raises(nd_distributed.WorkLost,
                           match="every Dask worker is gone and none came back within 1 s"):
            runner.value(handle)
    assert not (tmp_path / "m.npz").exists()


def test_a_task_that_kills_its_workers_is_one_error():
    import dask
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        future = client.submit(_dies, pure=False)
        with pytest.raises(nd_distributed.WorkLost, match=r"_dies-\S+ killed the 2 workers"):
            nd_distributed.Watch(client).result(future)
