"""PyTorch models in and out: state_dicts in PyTorch's naming and layout (no torch needed),
nn.Sequential conversion (read through module attributes; the real torch round trip runs
where torch is installed)."""
import numpy as np
import pytest

import npdistill as nd
from npdistill import interop, layers

from .optional import require


def torch_layout_net(seed=0):
    """A state_dict of conv(1->3, 3) relu pool2 conv(3->4, 3, padding 1) relu flatten
    linear(4*5*5 -> 6) relu linear(6 -> 10), named like a Papernot-style module."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1": ((3, 1, 3, 3), 3), "conv2": ((4, 3, 3, 3), 4), "fc1": ((6, 100), 6),
              "fc2": ((10, 6), 10)}
    return {f"{name}.{kind}": rng.normal(0, 0.3, shape if kind == "weight" else (bias,))
            for name, (shape, bias) in shapes.items() for kind in ("weight", "bias")}


def torch_forward(sd, x):
    """What PyTorch computes for that module: Conv2d is a cross-correlation, Linear x W^T + b,
    Flatten orders (C, H, W). Written from PyTorch's definitions, in NumPy."""
    def conv(x, W, b, pad):     # out[n, f, i, j] = b[f] + sum W[f, c, a, b] x[n, c, i + a, j + b]
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        windows = np.lib.stride_tricks.sliding_window_view(x, W.shape[2:], axis=(2, 3))
        return np.einsum("ncijab,fcab->nfij", windows, W) + b[None, :, None, None]

    def pool(x):
        n, c, h, w = x.shape
        return x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    relu = lambda a: np.maximum(a, 0)                                    # noqa: E731
    h = pool(relu(conv(x, sd["conv1.weight"], sd["conv1.bias"], 0)))
    h = relu(conv(h, sd["conv2.weight"], sd["conv2.bias"], 1)).reshape(len(x), -1)
    h = relu(h @ sd["fc1.weight"].T + sd["fc1.bias"])
    return h @ sd["fc2.weight"].T + sd["fc2.bias"]


def our_architecture(dtype=np.float64):
    return nd.Sequential([layers.Conv2D(1, 3, 3, dtype=dtype), layers.ReLU(), layers.MaxPool2D(2),
                          layers.Conv2D(3, 4, 3, padding="same", dtype=dtype), layers.ReLU(),
                          layers.Flatten(), layers.Dense(100, 6, dtype=dtype), layers.ReLU(),
                          layers.Dense(6, 10, dtype=dtype)], seed=0)


@pytest.mark.mnist
def test_a_torch_layout_state_dict_gives_torchs_logits_on_real_mnist(mnist):
    (x, _), _ = mnist
    x = x[:20, :, 4:16, 4:16].astype(np.float64)                  # 12x12 crops: 10 -> 5 -> 5
    sd = torch_layout_net()
    model = interop.load_state_dict(our_architecture(), sd)
    np.testing.assert_allclose(model.logits(x), torch_forward(sd, x), rtol=1e-10, atol=1e-12)
    model32 = interop.load_state_dict(our_architecture(np.float32), sd)
    np.testing.assert_allclose(model32.logits(x.astype(np.float32)), torch_forward(sd, x),
                               rtol=1e-5, atol=1e-5)


def test_state_dict_round_trip_and_sequential_naming():
    model = our_architecture()
    sd = interop.state_dict(model)
    assert list(sd) == ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias",
                        "8.weight", "8.bias"]                       # nn.Sequential's indices
    assert sd["6.weight"].shape == (6, 100)                         # Linear: (out, in)
    twin = interop.load_state_dict(our_architecture(), sd)
    x = np.random.default_rng(1).random((3, 1, 12, 12))
    np.testing.assert_array_equal(twin.logits(x), model.logits(x))


def test_load_state_dict_refuses_what_does_not_fit():
    sd = torch_layout_net()
    fewer = {k: v for k, v in sd.items() if not k.startswith("fc2")}
    with pytest.raises(ValueError, match="3 layers with weights .* the model 4"):
        interop.load_state_dict(our_architecture(), fewer)
    wrong = dict(sd, **{"fc1.weight": np.zeros((6, 99))})
    with pytest.raises(ValueError, match=r"fc1.weight has shape \(6, 99\) but layer 6 .* "
                                         r"needs \(6, 100\) in PyTorch's layout"):
        interop.load_state_dict(our_architecture(), wrong)
    with pytest.raises(ValueError, match="running_mean"):
        interop.load_state_dict(our_architecture(), dict(sd, **{"bn.running_mean": np.zeros(3)}))
    with pytest.raises(ValueError, match="needs a weight and a bias"):
        interop.load_state_dict(our_architecture(),
                                {k: v for k, v in sd.items() if k != "conv2.bias"})
    with pytest.raises(TypeError, match="a state_dict"):
        interop.load_state_dict(our_architecture(), [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        interop.load_state_dict(our_architecture(), dict(sd, **{"fc2.bias": np.full(10, np.nan)}))


# Modules shaped like torch.nn's (the attributes from_torch reads), for a run without torch.
class _Module:
    def __init__(self, **attributes):
        self.__dict__.update(attributes)

    def children(self):
        return iter(())


def _named(name, **attributes):
    return type(name, (_Module,), {})(**attributes)


class Sequential(_Module):
    def __init__(self, *modules):
        self.modules = modules

    def children(self):
        return iter(self.modules)


def fake_torch_net(sd):
    conv = lambda i, o, pad, key: _named("Conv2d", in_channels=i, out_channels=o,  # noqa: E731
                                         kernel_size=(3, 3), stride=(1, 1), padding=(pad, pad),
                                         dilation=(1, 1), groups=1, weight=sd[key + ".weight"],
                                         bias=sd[key + ".bias"])
    linear = lambda i, o, key: _named("Linear", in_features=i, out_features=o,   # noqa: E731
                                      weight=sd[key + ".weight"], bias=sd[key + ".bias"])
    return Sequential(
        Sequential(conv(1, 3, 0, "conv1"), _named("ReLU"),
                   _named("MaxPool2d", kernel_size=2, stride=2, padding=0, dilation=1,
                          ceil_mode=False)),
        conv(3, 4, 1, "conv2"), _named("ReLU"), _named("Flatten", start_dim=1, end_dim=-1),
        linear(100, 6, "fc1"), _named("ReLU"), _named("Dropout", p=0.5), linear(6, 10, "fc2"))


def test_from_torch_reads_a_sequential_of_the_usual_modules():
    sd = torch_layout_net()
    model = interop.from_torch(fake_torch_net(sd), dtype=np.float64)
    assert [type(l).__name__ for l in model.layers] == [
        "Conv2D", "ReLU", "MaxPool2D", "Conv2D", "ReLU", "Flatten", "Dense", "ReLU", "Dropout",
        "Dense"]
    assert model.layers[3].padding == "same"
    x = np.random.default_rng(2).random((2, 1, 12, 12))
    np.testing.assert_allclose(model.logits(x), torch_forward(sd, x), rtol=1e-10, atol=1e-12)


def test_from_torch_names_what_it_cannot_convert():
    sd = torch_layout_net()
    with pytest.raises(TypeError, match=r"module 1 \(BatchNorm2d\) has no npdistill counterpart"):
        interop.from_torch(Sequential(fake_torch_net(sd).modules[0].modules[0],
                                      _named("BatchNorm2d")))
    strided = _named("Conv2d", in_channels=1, out_channels=3, kernel_size=3, stride=2, padding=0,
                     dilation=1, groups=1, weight=sd["conv1.weight"], bias=sd["conv1.bias"])
    with pytest.raises(ValueError, match="only stride 1"):
        interop.from_torch(Sequential(strided))
    overlapping = _named("MaxPool2d", kernel_size=3, stride=1, padding=0, dilation=1,
                         ceil_mode=False)
    with pytest.raises(ValueError, match="non-overlapping"):
        interop.from_torch(Sequential(overlapping))


def test_to_torch_and_back_equal_the_model():
    torch = require("torch")
    model = our_architecture()
    model.layers.insert(0, layers.Normalize(0.1307, 0.3081))
    net = interop.to_torch(model)
    x = np.random.default_rng(3).random((4, 1, 12, 12))
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, model.logits(x), rtol=1e-10, atol=1e-12)
    back = interop.from_torch(net, dtype=np.float64)
    np.testing.assert_allclose(back.logits(x), model.logits(x), rtol=1e-12)


def papernot_torch_net(torch):
    """The paper's MNIST net as PyTorch users write it (default PyTorch initialisation)."""
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 200), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(200, 200), nn.ReLU(), nn.Dropout(0.5), nn.Linear(200, 10)).eval()


@pytest.mark.mnist
def test_a_real_torch_net_gives_torchs_logits_and_fgsm_on_real_mnist(mnist):
    torch = require("torch")
    _, (x, y) = mnist
    # dithered: MNIST's blank background makes whole max-pool windows tie exactly, and each
    # library breaks a tie its own way (torch by its convolution's position-dependent
    # rounding, npdistill's im2col path by the first index), which routes the gradient to
    # another pixel (~3% of the pixels' signs differ on undithered images off AVX-512)
    dither = np.random.default_rng(0).uniform(0, 0.04, x[:100].shape)
    x, y = (x[:100] * 0.96 + dither).astype(np.float32), y[:100]
    net = papernot_torch_net(torch)
    model = interop.from_torch(net)
    assert model.architecture() == nd.architectures.papernot_mnist().architecture()
    x_t = torch.from_numpy(x).requires_grad_(True)
    z_t = net(x_t)
    ours = model.logits(x)
    scale = np.abs(ours).max()
    np.testing.assert_allclose(ours, z_t.detach().numpy(), rtol=1e-5, atol=1e-5 * scale)
    torch.nn.functional.cross_entropy(z_t, torch.from_numpy(y), reduction="sum").backward()
    theirs = torch.clamp(x_t + 0.3 * x_t.grad.sign(), 0, 1).detach().numpy()
    r = nd.attacks.fgsm(model, x, y, eps=0.3)
    # The same step but for a few pixels in 100,000 (0.004% on the im2col path, float32):
    # a gradient component within rounding of 0 can take the other sign.
    assert np.mean(r.x_adv != theirs) < 1e-3
    with torch.no_grad():
        their_success = (net(torch.from_numpy(theirs)).argmax(1).numpy() != y).mean()
    assert abs(r.success.mean() - their_success) <= 0.02
