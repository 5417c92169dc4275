"""Dask: sharded attacks equal the direct call (dask.distributed is an optional extra)."""
import numpy as np
import pytest

import npdistill as nd
from npdistill import distributed as nd_distributed

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

