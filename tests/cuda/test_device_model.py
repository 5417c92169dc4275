"""DeviceModel, DevicePasses and DeviceTrainer: the GPU passes equal the host Sequential's, and
training on the device equals training on the host (the same batches and dropout masks, float
rounding aside)."""
import numpy as np
import pytest

import npdistill as nd
from npdistill import kernels, layers

pytest.importorskip("numba.cuda", reason="numba-cuda not installed (pip install -e '.[test]')")
from npdistill.cuda import _launch  # noqa: E402
from npdistill.cuda.device_model import DeviceModel  # noqa: E402
from npdistill.cuda.passes import DevicePasses  # noqa: E402

pytestmark = pytest.mark.cuda


def small_net(dtype, seed=1):
    """Every layer type, both paddings, a pool that drops a row (5 -> 2); small, for the simulator."""
    return nd.Sequential([layers.Normalize([0.5, 0.25], [0.5, 2.0]),
                          layers.Conv2D(2, 2, 3, padding="same", dtype=dtype), layers.ReLU(),
                          layers.MaxPool2D(2), layers.Conv2D(2, 3, 1, dtype=dtype), layers.ReLU(),
                          layers.Flatten(), layers.Dense(12, 4, dtype=dtype), layers.ReLU(),
                          layers.Dropout(0.3), layers.Dense(4, 3, dtype=dtype)], seed=seed)


def unfused_net(dtype, seed=1):
    """Layers the fused stages cannot take in, each run alone: a ReLU and dropout after the
    pooling, a Flatten alone, a ReLU after the last Dense (so no head), and a Dense with
    its ReLU whose next layer cannot take its derivative in."""
    return nd.Sequential([layers.Conv2D(2, 3, 3, padding="same", dtype=dtype),
                          layers.MaxPool2D(2), layers.ReLU(), layers.Dropout(0.25),
                          layers.Flatten(), layers.Dense(12, 5, dtype=dtype), layers.ReLU(),
                          layers.Dense(5, 3, dtype=dtype), layers.ReLU(), layers.ReLU()],
                         seed=seed)


NETS = {"fused": small_net, "unfused": unfused_net}


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_backward_equal_the_host_model(dtype, net):
    rng = np.random.default_rng(0)
    host = NETS[net](dtype)
    x = rng.random((2, 2, 5, 5)).astype(dtype)
    device = DeviceModel(host)
    passes = DevicePasses(host, device)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)

    z = host.logits(x)
    np.testing.assert_allclose(passes.logits(x), z, **tol)
    dz = rng.standard_normal(z.shape).astype(dtype)
    dx = host.backward(dz)
    z_dev = device.forward(device.to_device_images(x))
    from numba import cuda
    dx_dev = device.backward(cuda.to_device(dz)).copy_to_host().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(dx_dev, dx, **tol)
    assert z_dev.shape == z.shape
    for key, grad in host.grads.items():
        np.testing.assert_allclose(device.host_layout(key, device.grads[key]), grad, **tol,
                                   err_msg=key)
    # stacked seeds: two vector-Jacobian products from one forward
    seeds = rng.standard_normal((2 * len(x), z.shape[1])).astype(dtype)
    host.logits(x)
    expected = host.backward(seeds, param_grads=False)
    device.forward(device.to_device_images(x))
    got = device.backward(cuda.to_device(seeds), param_grads=False).copy_to_host()
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, **tol)
    np.testing.assert_allclose(passes.input_gradient(x, dz), host.input_gradient(x, dz), **tol)
    np.testing.assert_array_equal(passes.predict(x), host.predict(x))


@pytest.mark.parametrize("where", ["1.b", "7.W"])
def test_a_nan_reaches_the_logits_as_on_the_host(where):
    """A NaN in a convolution's bias (through its fused ReLU) or in the head's hidden layer
    (its ReLU) gives the host's NaN logits; the device's ReLUs once made it 0. (A window
    holding only some NaN: the pooling kernels' own tests.)"""
    host = small_net(np.float32)
    host.params[where].flat[0] = np.nan
    x = np.random.default_rng(0).random((2, 2, 5, 5)).astype(np.float32)
    z = host.logits(x)
    assert np.isnan(z).any()
    np.testing.assert_allclose(DevicePasses(host, DeviceModel(host)).logits(x), z,
                               rtol=1e-5, atol=1e-6)


def test_parameters_round_trip_between_layouts():
    host = small_net(np.float64)
    device = DeviceModel(host)
    for key, value in host.params.items():
        back = device.host_layout(key, device.device_layout(key, value))
        np.testing.assert_array_equal(back, value)
    with pytest.raises(ValueError, match="dlogits must have shape"):
        DevicePasses(host, device).input_gradient(np.zeros((1, 2, 5, 5)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="input gradients only"):
        DevicePasses(host, device).backward(np.zeros((1, 3)))


def test_single_channel_images_reach_the_device_with_c_order_strides():
    """NumPy flags the (N, H, W, 1) view of (N, 1, H, W) images contiguous whatever its
    last stride; on a real GPU Numba's reshape then refused MNIST's training set.
    kernels.channels_last gives standard strides, still without a copy."""
    x = np.random.default_rng(0).random((3, 1, 4, 4)).astype(np.float32)
    on_host = kernels.channels_last(x)
    assert on_host.strides == (64, 16, 4, 4) and np.shares_memory(on_host, x)
    np.testing.assert_array_equal(on_host, x.transpose(0, 2, 3, 1))
    net = nd.Sequential([layers.Conv2D(1, 2, 3), layers.Flatten(), layers.Dense(8, 2)], seed=0)
    on_device = DeviceModel(net).to_device_images(x)
    assert on_device.strides == (64, 16, 4, 4)
    np.testing.assert_array_equal(on_device.reshape(3, 16).copy_to_host(), x.reshape(3, 16))


@pytest.mark.parametrize("net", sorted(NETS))
def test_training_on_the_device_equals_training_on_the_host(net):
    rng = np.random.default_rng(0)
    x = rng.random((6, 2, 5, 5)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    soft = rng.random((6, 3)).astype(np.float32)
    soft /= soft.sum(axis=1, keepdims=True)
    # hard labels; distillation's soft ones with every gradient scaled, and with the logits
    # layer's learning rate scaled (per-parameter learning rates)
    for target, T, scale, factor in ((y, 1.0, 1.0, 1.0), (soft, 5.0, 5.0, 1.0),
                                     (soft, 5.0, 1.0, 25.0)):
        on_host, on_device = NETS[net](np.float32), NETS[net](np.float32)
        options = dict(epochs=1, batch_size=4,           # 4 + a partial batch of 2
                       seed=3, progress=False, temperature=T, loss_scale=scale, lr=0.5,
                       momentum=0.5, logits_lr_factor=factor)
        _, h_host = nd.train(on_host, (x, target), **options)
        with kernels.using("cuda"):
            _, h_device = nd.train(on_device, (x, target), validation=(x, y), **options)
        for key, value in on_host.params.items():
            assert not np.array_equal(value, NETS[net](np.float32).params[key]), key  # it trained
            np.testing.assert_allclose(on_device.params[key], value, rtol=1e-5, atol=1e-6,
                                       err_msg=key)
        np.testing.assert_allclose(h_device["loss"], h_host["loss"], rtol=1e-5)
        assert h_device["train_accuracy"] == h_host["train_accuracy"]
        assert h_device["val_accuracy"][0] == np.mean(on_host.predict(x) == y)


@pytest.mark.gpu
@pytest.mark.skipif(_launch.SIMULATED, reason="needs a real GPU (too slow on the simulator)")
def test_papernot_training_step_on_the_gpu_equals_the_host(mnist):
    (x, y), _ = mnist
    x, y = x[:512], y[:512]
    on_host, on_device = (nd.architectures.papernot_mnist(seed=0) for _ in range(2))
    nd.train(on_host, (x, y), epochs=1, seed=0, progress=False)
    with kernels.using("cuda"):
        nd.train(on_device, (x, y), epochs=1, seed=0, progress=False)
    for key, value in on_host.params.items():
        np.testing.assert_allclose(on_device.params[key], value, rtol=1e-3, atol=1e-5, err_msg=key)


def test_device_passes_backpropagate_some_rows_as_the_host_does():
    """Sequential.backward(rows=), which the CW attacks call, on DevicePasses (cuda backend)."""
    rng = np.random.default_rng(2)
    host = small_net(np.float64)
    x = rng.random((3, 2, 5, 5))
    dz = rng.standard_normal((3, 3))
    rows = np.array([0, 2])
    host.forward(x)
    expected = host.backward(dz[rows], param_grads=False, rows=rows)
    with kernels.using("cuda"):
        passes = nd.placement.passes(host)
        assert isinstance(passes, DevicePasses)
        passes.forward(x)
        got = passes.backward(dz[rows], param_grads=False, rows=rows)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


ATTACKS = {
    "jacobian": lambda m, x, y, t: nd.jacobian(m, x[:1], of="softmax"),
    "bim": lambda m, x, y, t: nd.attacks.bim(m, x[:1], y[:1], eps=0.2, steps=2),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_on_the_cuda_backend_equal_the_host(toy, name):
    """The passes run on the device (placement.passes): same examples. JSMA and
    CW L2, whose loops run on the device, have their own tests below."""
    model, x, y, target = toy
    x, y, target = x[:2], y[:2], target[:2]
    expected = ATTACKS[name](model, x, y, target)
    with kernels.using("cuda"):
        got = ATTACKS[name](model, x, y, target)
    if name == "jacobian":
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        return
    np.testing.assert_allclose(got.x_adv, expected.x_adv, atol=1e-5)
    np.testing.assert_array_equal(got.success, expected.success)


def count_transfers(monkeypatch):
    """A list that records "in" for every cuda.to_device and "out" for every copy_to_host."""
    from numba import cuda
    array_type = type(cuda.to_device(np.zeros(1)))
    moves = []
    real_to_device, real_to_host = cuda.to_device, array_type.copy_to_host
    monkeypatch.setattr(cuda, "to_device", lambda *a, **k: moves.append("in") or
                        real_to_device(*a, **k))
    monkeypatch.setattr(array_type, "copy_to_host", lambda self, *a, **k: moves.append("out") or
                        real_to_host(self, *a, **k))
    return moves


JSMA_CASES = {
    "softmax": dict(),
    "logits, decreasing, narrowed domain": dict(on="logits", theta=-0.4, mask=True),
}


@pytest.mark.parametrize("case", sorted(JSMA_CASES))
def test_jsma_runs_every_iteration_on_the_device(case, monkeypatch):
    """The device loop (cuda/attacks.py) gives the host loop's examples, success and
    iteration counts, and moves a fixed number of arrays whatever the iteration count."""
    options = dict(JSMA_CASES[case])
    mask = options.pop("mask", False)
    rng = np.random.default_rng(3)
    model = small_net(np.float64, seed=4)
    x = rng.random((4, 2, 5, 5))
    x[0, 0, :2] = 1.0
    x[1, 1, :2] = 0.0                                             # pixels already at the bound
    target = (model.predict(x) + 1 + rng.integers(0, 2, 4)) % 3
    if mask:
        options["search_domain"] = rng.random(x.shape) < 0.7
    options.update(gamma=0.5, progress=False)
    expected = nd.attacks.jsma(model, x, target=target, **options)
    assert expected.iterations.max() > 2                        # the loop really ran

    moves = count_transfers(monkeypatch)
    with kernels.using("cuda"):
        got = nd.attacks.jsma(model, x, target=target, **options)
    np.testing.assert_allclose(got.x_adv, expected.x_adv, atol=1e-12)
    np.testing.assert_array_equal(got.success, expected.success)
    np.testing.assert_array_equal(got.iterations, expected.iterations)
    from npdistill.cuda.attacks import CHECK_EVERY
    max_iter = int(0.5 * x[0].size / 2)
    parameters = len(model.params)
    constants = 3                                    # Normalize's mean, 0 and 1 / std, once
    assert len(moves) <= parameters + constants + 6 + 3 + max_iter // CHECK_EVERY + 1, moves


@pytest.mark.parametrize("warm_start, abort_early", [
    (True, True),
    # the reference's algorithm: every image to the last step of every round, 100 s on the
    # simulator (the fast suite's budget), run with -m slow
    pytest.param(False, "batch", marks=pytest.mark.slow)])
def test_cw_l2_rounds_run_every_adam_step_on_the_device(toy, monkeypatch, warm_start, abort_early):
    """The device round (cuda/attacks.py) gives the host rounds' examples, successes and
    step counts (abort_early stopping images at different steps, or the whole batch at
    once; warm starts and their check-period rule included), and moves a fixed number of
    arrays per round whatever the step count."""
    model, x, _, target = toy
    model, x = model.astype(np.float64), x[:3].astype(np.float64)
    options = dict(target=target[:3], c=1.0, lr=0.1, binary_search_steps=3, max_iterations=10,
                   warm_start=warm_start, abort_early=abort_early, progress=False)
    expected = nd.attacks.cw_l2(model, x, **options)
    assert expected.success.all()
    assert (len(set(expected.iterations)) > 1) == (abort_early is True)   # stopped apart
    moves = count_transfers(monkeypatch)
    with kernels.using("cuda"):
        got = nd.attacks.cw_l2(model, x, **options)
    np.testing.assert_allclose(got.x_adv, expected.x_adv, atol=1e-10)
    np.testing.assert_array_equal(got.success, expected.success)
    np.testing.assert_array_equal(got.iterations, expected.iterations)
    # the parameters and the logits check's batch in, its logits out; per round: the
    # round's state in (16 arrays), at each check step (10 at most) the losses and
    # distances out and the flags in, the results out (5)
    per_round = 16 + 3 * 10 + 5
    assert len(moves) <= len(model.params) + 2 + 3 * per_round, "".join(m[0] for m in moves)
