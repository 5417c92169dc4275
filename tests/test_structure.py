"""The package's shape: no import circle and none from a lower floor up, one module above
kernels/ that reads the backend, nn/ never importing cuda/, the convolution chosen and run
only in kernels/, and the Passes interface enough for a model from elsewhere."""
import ast
from pathlib import Path

import numpy as np
import pytest

import npdistill as nd

PACKAGE = Path(nd.__file__).resolve().parent


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports():
    """{module: {modules of npdistill it imports, at any depth of its code}}.

    ``from X import name`` is an edge to X.name where that is a module, else to X (a
    package's ``__init__`` runs for its submodules either way: that is no edge).
    """
    raw = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        pairs = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")
                base = base[:len(base) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                pairs += [(target, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                pairs += [(a.name, None) for a in node.names]
        raw[name] = pairs
    graph = {}
    for name, pairs in raw.items():
        targets = {f"{t}.{n}" if f"{t}.{n}" in raw else t for t, n in pairs}
        graph[name] = {t for t in targets if t in raw and t != name}
    return graph


def cycles(graph):
    """Every import circle, as a list of modules (depth-first search)."""
    found, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_no_import_circle_in_the_package():
    graph = imports()
    assert "npdistill.nn.model" in graph and "npdistill.placement" in graph
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]      # the check itself works


def test_nn_never_imports_cuda():
    graph = imports()
    offenders = {m: sorted(t for t in targets if t.startswith("npdistill.cuda"))
                 for m, targets in graph.items() if m.startswith("npdistill.nn")}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_only_kernels_and_placement_read_the_backend():
    """The CLI names the backend it runs on (its --backend is the user's choice); below it,
    only kernels/ (the dispatch) and placement.py decide anything by it."""
    readers = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name.startswith("npdistill.kernels") or name in ("npdistill.placement",
                                                              "npdistill.__main__"):
            continue
        text = path.read_text()
        if "backend()" in text or "kernels._active" in text:
            readers.append(name)
    assert readers == []


class Linear(nd.Passes):
    """A model from elsewhere: softmax regression in plain NumPy, z = x W + b on flat pixels."""

    def __init__(self, weights, bias):
        self.W, self.b = weights, bias
        self.dtype, self.num_classes = weights.dtype, weights.shape[1]

    def check_input(self, x):
        if x.ndim != 4 or x.dtype != self.dtype:
            raise ValueError(f"x must be (N, C, H, W) {self.dtype}, got {x.shape} {x.dtype}")
        return x

    def forward(self, x, training=False):
        self.shape = x.shape
        return x.reshape(len(x), -1) @ self.W + self.b

    def backward(self, dlogits, param_grads=True, input_grad=True, rows=None):
        dx = dlogits @ self.W.T                        # stacked seeds: S * N rows, fine
        return dx.reshape((len(dlogits),) + self.shape[1:])


def test_a_model_from_elsewhere_reaches_the_attacks_through_passes(toy):
    _, x, y, _ = toy
    rng = np.random.default_rng(0)
    model = Linear(rng.standard_normal((64, 3)).astype(np.float32), np.zeros(3, np.float32))
    assert nd.placement.passes(model) is model                 # it runs its own passes
    z = model.logits(x)
    np.testing.assert_array_equal(model.predict(x), z.argmax(axis=1))
    J = nd.jacobian(model, x[:2], of="logits")
    np.testing.assert_allclose(J.reshape(2, 3, -1), np.broadcast_to(model.W.T, (2, 3, 64)))
    r = nd.attacks.fgsm(model, x, model.predict(x), eps=0.3)
    assert r.success.mean() > 0 and np.abs(r.x_adv - x).max() <= 0.3 + 1e-6
    assert 0 <= nd.metrics.accuracy(model, x, y) <= 1
    target = (model.predict(x[:4]) + 1) % 3
    assert nd.attacks.jsma(model, x[:4], target=target).success.any()
    assert nd.attacks.cw_l2(model, x[:4], target=target, c=10.0, binary_search_steps=2,
                            max_iterations=50).success.any()
    amplitude = nd.metrics.adversarial_gradient_amplitude(model, x[:4])   # in its own dtype
    assert amplitude.shape == (4,) and (amplitude > 0).all()
    assert nd.metrics.zero_gradient_fraction(model, x[:4]).shape == (4,)
    assert set(nd.metrics.gradient_masking(model, x[:4], y[:4])) == {"fgsm", "jsma", "cw"}


CONVOLUTION_PASSES = {"conv_algorithm", "im2col", "col2im", "im2col_weight_gradient",
                      "direct_correlate", "direct_input_gradient", "direct_weight_gradient",
                      "winograd_correlate", "winograd_input_gradient", "winograd_weight_gradient"}


def test_the_convolution_is_chosen_and_run_only_in_kernels():
    """Above kernels/ a convolution is ``kernels.convolution.choose(...)`` and its object's
    passes: nothing calls an algorithm's kernels or compares the algorithms' names."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name.startswith("npdistill.kernels"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            called = (node.func.attr if isinstance(node, ast.Call)
                      and isinstance(node.func, ast.Attribute) else None)
            named = node.value if isinstance(node, ast.Constant) else None
            if called in CONVOLUTION_PASSES or named in ("im2col", "direct", "winograd2",
                                                         "winograd4"):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_no_import_runs_from_a_lower_floor_up():
    """kernels/ imports nothing of the library above it, cuda/ (the GPU kernels and loops
    placement.py picks) nothing of attacks/, defenses/ or the pipelines."""
    graph = imports()
    above_kernels = [m for m, targets in graph.items() if m.startswith("npdistill.kernels")
                     for t in targets if not t.startswith(("npdistill.kernels",
                                                           "npdistill._ext", "npdistill.cuda",
                                                           "npdistill._version"))]
    above_cuda = [m for m, targets in graph.items() if m.startswith("npdistill.cuda")
                  for t in targets if t.startswith(("npdistill.attacks", "npdistill.defenses",
                                                    "npdistill.reproduce", "npdistill.train",
                                                    "npdistill.runs", "npdistill.placement"))]
    assert above_kernels == [] and above_cuda == []


def test_an_unknown_device_loop_is_refused_not_run_on_the_host(toy):
    """placement.device_loop names its loops: a typo is an error, not a silent host run."""
    model = toy[0]
    assert nd.placement.device_loop("cw_l2", model) is None      # a host model: the host loop
    with pytest.raises(ValueError, match=r"no device loop is called 'cw_L2'.*'jsma', 'cw_l2'"):
        nd.placement.device_loop("cw_L2", model)


def test_no_module_of_the_package_grows_past_450_lines():
    """A module that long has stopped being one idea (issue 40's review): split it."""
    long = {module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}


def test_the_benchmarks_are_a_package_run_with_python_m():
    """bench/ reaches bench/common.py as a package (python -m bench.<name>), not by editing
    sys.path."""
    bench = PACKAGE.parents[1] / "bench"
    if not bench.is_dir():
        pytest.skip("an installed copy: bench/ is the repository's")
    assert (bench / "__init__.py").is_file()
    assert [p.name for p in bench.glob("*.py") if "sys.path.insert" in p.read_text()] == []
