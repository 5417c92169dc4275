"""interop.TorchModel: a live PyTorch module as a Passes. On the papers' MNIST net it gives
what the converted Sequential gives (logits, Jacobians, every attack's examples); on a small
residual net with batch norm and a stride-2 convolution, which no conversion reaches, its
Jacobian is torch.func.jacrev's, its FGSM a plain-torch FGSM, and CW L2 breaks it; its
vector-Jacobian products (stacked seeds, rows=) match central differences in float64."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npdistill as nd
from npdistill import interop, layers

from .gradcheck import numerical_jacobian
from .optional import require

torch = require("torch")
nn = torch.nn


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input, then ReLU (a ResNet basic block)."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def resnet(width=8, classes=10):
    """A small residual net: stem, block, a stride-2 grouped-free downsampling convolution,
    block, global average pooling, linear. Nothing in it converts to a Sequential."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        Block(width),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(2 * width), nn.ReLU(),
        Block(2 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))


@pytest.fixture(scope="module")
def trained_resnet(mnist):
    """The residual net trained by PyTorch (Adam, one pass over 10,000 MNIST images), its
    batch-norm statistics then re-estimated over 2,000 of them (~5 s)."""
    (x, y), (x_test, y_test) = mnist
    torch.manual_seed(0)
    net = resnet()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x[:10000]), torch.from_numpy(y[:10000].astype(np.int64))
    for start in range(0, 10000, 32):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(xt[start:start + 32]), yt[start:start + 32])
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None                  # a plain average over the batch
        net(xt[:2000])
    net.eval()
    with torch.no_grad():
        accuracy = (net(torch.from_numpy(x_test[:500])).argmax(1).numpy() == y_test[:500]).mean()
    assert accuracy > 0.85, accuracy
    return net, x_test[:40], y_test[:40].astype(np.int64)


@pytest.fixture(scope="module")
def paper_nets(mnist):
    """The papers' MNIST net trained here (float64), as a Sequential and as its live
    PyTorch twin (to_torch) behind a TorchModel, and 8 test images dithered: where two
    activations in a max-pool window tie (MNIST's blank background makes whole windows
    equal), or differ by a rounding that the two libraries' summation orders decide, each
    library takes its own subgradient; dithered images have no such ties."""
    (x, y), (x_test, y_test) = mnist
    model = nd.architectures.papernot_mnist(seed=0)
    nd.train(model, (x[:5000], y[:5000]), batch_size=64, lr=0.02, momentum=0.9,
             progress=False)                     # ~89% (2.5 s)
    model = model.astype(np.float64)
    dither = np.random.default_rng(0).uniform(0, 0.04, x_test[:8].shape)
    images = x_test[:8].astype(np.float64) * 0.96 + dither
    return model, interop.TorchModel(interop.to_torch(model)), images, \
        y_test[:8].astype(np.int64)


# Every public attack and every metric that takes a model, on (model, x, y, target):
# each returns what is compared between the Sequential and its TorchModel twin.
ATTACKS = nd.attacks
CALLS = {
    "apgd": lambda m, x, y, t: ATTACKS.apgd(m, x, y, eps=0.1, steps=20, loss="dlr"),
    "bim": lambda m, x, y, t: ATTACKS.bim(m, x, target=t, eps=0.3, steps=10),
    "cw_l0": lambda m, x, y, t: ATTACKS.cw_l0(m, x[:2], target=t[:2], c=1.0,
                                              lr=0.1, max_iterations=60),
    "cw_l2": lambda m, x, y, t: ATTACKS.cw_l2(m, x, y, c=1.0, binary_search_steps=3,
                                              max_iterations=60),
    "cw_linf": lambda m, x, y, t: ATTACKS.cw_linf(m, x[:2], target=t[:2], c=1.0,
                                                  lr=5e-2, max_iterations=60),
    "fgsm": lambda m, x, y, t: ATTACKS.fgsm(m, x, y, eps=0.2),
    "gradient_attack": lambda m, x, y, t: ATTACKS.gradient_attack(
        m, x, y, targeted=False, eps=3.0, steps=3, step_size=1.5, norm=2, T=5.0),
    "jsma": lambda m, x, y, t: ATTACKS.jsma(m, x, target=t),
    "jsma_all_targets": lambda m, x, y, t: ATTACKS.jsma_all_targets(m, x[:2], y[:2]),
    "loss_gradient": lambda m, x, y, t: ATTACKS.loss_gradient(m, x, y, T=10.0),
    "pgd": lambda m, x, y, t: ATTACKS.pgd(m, x, y, eps=0.2, steps=10, seed=2),
    "square": lambda m, x, y, t: ATTACKS.square(m, x, y, eps=0.2, queries=100, seed=2),
    "square, L2": lambda m, x, y, t: ATTACKS.square(m, x, y, eps=2.0, norm=2, queries=100,
                                                  seed=2),
    "tgsm": lambda m, x, y, t: ATTACKS.tgsm(m, x, target=t, eps=0.4),
    "metrics.accuracy": lambda m, x, y, t: nd.metrics.accuracy(m, x, y),
    "metrics.adversarial_gradient_amplitude":
        lambda m, x, y, t: nd.metrics.adversarial_gradient_amplitude(m, x, T=10.0),
    "metrics.zero_gradient_fraction":
        lambda m, x, y, t: nd.metrics.zero_gradient_fraction(m, x, T=50.0),
    "metrics.gradient_masking": lambda m, x, y, t: [
        list(row.values()) for row in nd.metrics.gradient_masking(m, x, y, T=10.0).values()],
    "jacobian": lambda m, x, y, t: nd.jacobian(m, x, T=10.0),
    "jacobian of logits": lambda m, x, y, t: nd.jacobian(m, x, of="logits"),
    "evaluate": lambda m, x, y, t: nd.evaluate(
        m, x, y, attacks=["fgsm", ("apgd-dlr", {"steps": 10}), ("square", {"queries": 50})],
        eps=(0, 0.1, 0.2)).broken,
}
NOT_ON_A_MODEL = {"AttackResult", "dlr_loss", "random_targets"}


def test_the_table_walks_every_public_attack():
    assert set(nd.attacks.__all__) - NOT_ON_A_MODEL <= set(CALLS)


@pytest.mark.mnist
def test_on_the_papers_net_it_computes_what_the_converted_sequential_does(paper_nets):
    model, tm, x, _ = paper_nets
    assert tm.dtype == np.float64 and repr(tm).startswith("TorchModel(Sequential")
    np.testing.assert_allclose(tm.logits(x), model.logits(x), rtol=1e-10, atol=1e-10)
    assert tm.num_classes == 10


@pytest.mark.mnist
@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_attack_and_metric_gives_what_it_gives_on_the_sequential(paper_nets, name):
    model, tm, x, y = paper_nets
    target = (y + 1) % 10
    theirs, ours = (CALLS[name](m, x, y, target) for m in (tm, model))
    if isinstance(ours, nd.attacks.AttackResult):
        np.testing.assert_array_equal(theirs.success, ours.success)
        np.testing.assert_allclose(theirs.x_adv, ours.x_adv, atol=1e-6)
        assert theirs.success.any() or name.startswith("square")   # a comparison of something
    else:
        np.testing.assert_allclose(np.asarray(theirs, float), np.asarray(ours, float),
                                   rtol=1e-7, atol=1e-12)
    assert all(p.grad is None for p in tm.module.parameters())     # nothing written there


@pytest.mark.mnist
@pytest.mark.parametrize("operator", nd.defenses.mutation_detection.OPERATORS)
def test_its_mutants_are_the_sequentials_mutants(paper_nets, operator):
    model, tm, x, y = paper_nets
    before = tm.logits(x)
    theirs = nd.defenses.mutate(tm, operator, 0.05, np.random.default_rng(3))
    ours = nd.defenses.mutate(model, operator, 0.05, np.random.default_rng(3))
    assert not np.allclose(ours.logits(x), model.logits(x))         # it did mutate
    np.testing.assert_allclose(theirs.logits(x), ours.logits(x), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(tm.logits(x), before)              # on a copy
    detector = nd.defenses.MutationDetector(tm, (x, y), operator=operator, rate=0.05,
                                            max_mutants=6, min_accuracy=0.5, seed=1)
    reference = nd.defenses.MutationDetector(model, (x, y), operator=operator, rate=0.05,
                                             max_mutants=6, min_accuracy=0.5, seed=1)
    np.testing.assert_array_equal(detector.label_change_rate(x),
                                  reference.label_change_rate(x))


@pytest.mark.mnist
def test_preprocessing_is_the_normalize_layer(paper_nets):
    model, _, x, _ = paper_nets
    normalized = model.copy()
    normalized.layers.insert(0, layers.Normalize(0.1307, 0.3081))
    tm = interop.TorchModel(interop.to_torch(model), preprocessing=(0.1307, 0.3081))
    np.testing.assert_allclose(tm.logits(x), normalized.logits(x), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(nd.jacobian(tm, x[:2]), nd.jacobian(normalized, x[:2]),
                               rtol=1e-8, atol=1e-12)


@pytest.mark.mnist
def test_a_residual_net_jacobian_is_jacrev(trained_resnet):
    net, x, _ = trained_resnet
    double = resnet()
    double.load_state_dict(net.state_dict())
    double = double.double().eval()
    x = x[:3].astype(np.float64)
    ours = nd.jacobian(interop.TorchModel(double), x, of="logits")
    theirs = torch.func.vmap(torch.func.jacrev(lambda v: double(v[None])[0]))(
        torch.from_numpy(x)).detach().numpy()               # (B, K, C, H, W)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13)


@pytest.mark.mnist
def test_a_residual_net_fgsm_is_plain_torch_fgsm_and_cw_breaks_it(trained_resnet):
    net, x, y = trained_resnet
    tm = interop.TorchModel(net)
    x_t = torch.from_numpy(x).requires_grad_(True)
    nn.functional.cross_entropy(net(x_t), torch.from_numpy(y), reduction="sum").backward()
    theirs = torch.clamp(x_t + 0.2 * x_t.grad.sign(), 0, 1).detach().numpy()
    result = nd.attacks.fgsm(tm, x, y, eps=0.2)
    # float32: the two compute the loss's gradient in another order, so a pixel whose
    # gradient is ~1e-9 of the largest may take the other sign
    assert np.mean(result.x_adv != theirs) < 1e-3
    right = tm.predict(x[:24]) == y[:24]
    cw = nd.attacks.cw_l2(tm, x[:24][right][:20], y[:24][right][:20], c=0.1,
                          binary_search_steps=4, max_iterations=100, progress=False)
    assert cw.success.mean() >= 0.9, cw.success.mean()
    assert (tm.predict(cw.x_adv) != y[:24][right][:20])[cw.success].all()


def small_net(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.BatchNorm2d(3), nn.Tanh(),
                        nn.Flatten(), nn.Linear(3 * 3 * 3, 4)).double()
    with torch.no_grad():                       # batch-norm statistics that are not 0 and 1
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), seeds=st.integers(1, 3), seed=st.integers(0, 2**16),
       with_rows=st.booleans())
def test_vector_jacobian_products_match_central_differences(n, seeds, seed, with_rows):
    rng = np.random.default_rng(seed)
    tm = interop.TorchModel(small_net(seed), preprocessing=((0.2, 0.4), (0.5, 2.0)))
    x = rng.random((n, 2, 6, 6))
    tm.forward(x)
    if with_rows:
        rows = np.sort(rng.choice(n, rng.integers(1, n + 1), replace=False))
        s = rng.normal(size=(len(rows), 4))
        analytic = tm.backward(s, param_grads=False, rows=rows)
        numeric = np.einsum("rk,rkchw->rchw", s, numerical_jacobian(
            lambda: tm.forward(x)[rows], x)[np.arange(len(rows)), :, rows])
    else:
        s = rng.normal(size=(seeds * n, 4))
        analytic = tm.backward(s, param_grads=False).reshape(seeds, n, 2, 6, 6)
        J = numerical_jacobian(lambda: tm.forward(x), x)      # (n, K, n, C, H, W)
        J = J[np.arange(n), :, np.arange(n)]                   # (n, K, C, H, W)
        numeric = np.einsum("snk,nkchw->snchw", s.reshape(seeds, n, 4), J)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_pickled_it_computes_the_same():
    tm = interop.TorchModel(small_net(1))
    x = np.random.default_rng(0).random((3, 2, 6, 6))
    z = tm.logits(x)
    back = pickle.loads(pickle.dumps(tm))
    np.testing.assert_array_equal(back.logits(x), z)
    np.testing.assert_array_equal(back.input_gradient(x, np.ones_like(z)),
                                  tm.input_gradient(x, np.ones_like(z)))


def test_refusals_name_the_argument():
    net = small_net(0)
    x = np.random.default_rng(0).random((2, 2, 6, 6))
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, got Sequential"):
        interop.TorchModel(nd.architectures.papernot_mnist())
    in_training = r"training mode \(Sequential, 0, 1, 2 and 2 more\).*call module.eval\(\)"
    with pytest.raises(ValueError, match=in_training):
        interop.TorchModel(small_net(0).train())
    with pytest.raises(TypeError, match=r"dtype is float32 but module computes in float64"):
        interop.TorchModel(net, dtype=np.float32)
    mixed = small_net(0)
    mixed[4].float()
    with pytest.raises(TypeError, match="must all be float32 or all float64"):
        interop.TorchModel(mixed)
    with pytest.raises(ValueError, match="module is on cpu but device is meta"):
        interop.TorchModel(net, device="meta")
    tm = interop.TorchModel(net)
    with pytest.raises(TypeError, match="x has dtype float32 but float64"):
        tm.logits(x.astype(np.float32))
    with pytest.raises(ValueError, match=r"x of shape \(2, 1, 6, 6\) does not fit the module"):
        tm.logits(x[:, :1])
    with pytest.raises(ValueError, match="backward needs a forward pass first"):
        interop.TorchModel(net).backward(np.ones((2, 4)), param_grads=False)
    tm.logits(x)
    with pytest.raises(ValueError, match="input gradients only"):
        tm.backward(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"dlogits must have shape \(S \* 2, 4\)"):
        tm.backward(np.ones((3, 4)), param_grads=False)
    with pytest.raises(ValueError, match="eval mode"):
        tm.forward(x, training=True)
    with pytest.raises(ValueError, match=r"clip box \[-1, 1\] reaches outside .*clip=\[0, 1\]"):
        nd.attacks.fgsm(tm, x, np.zeros(2, np.int64), eps=0.1, clip=(-1, 1))
    with pytest.raises(ValueError, match="x must hold pixels in|x must lie in the clip box"):
        nd.metrics.accuracy(tm, x * 3, np.zeros(2, np.int64))
    wide = interop.TorchModel(net, clip=(0, 3))             # a module taking [0, 3] inputs
    assert nd.metrics.accuracy(wide, x * 3, np.zeros(2, np.int64)) in (0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="preprocessing has 3 channels but x has shape"):
        interop.TorchModel(net, preprocessing=((0, 0, 0), 1)).logits(x)
    with pytest.raises(ValueError, match="preprocessing std must be positive"):
        interop.TorchModel(net, preprocessing=(0, 0))
    with pytest.raises(ValueError, match=r"module must return logits \(N, K\)"):
        interop.TorchModel(nn.Sequential(nn.Identity()).eval()).logits(x.astype(np.float32))
    with pytest.raises(TypeError, match="model must be a Sequential or an interop.TorchModel"):
        nd.defenses.mutate(object(), "GF", 0.1, np.random.default_rng(0))
