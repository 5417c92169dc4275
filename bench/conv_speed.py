"""Per-layer speed of the paper's MNIST net at batch 128: forward and backward
(input and parameter gradients) of each convolution and pooling layer, for
npdistill's numpy backend, its cython backend with each convolution algorithm
(im2col, the direct kernels of ext/direct_conv.h -- the default, "auto", where the CPU
has AVX-512F --, Winograd F(2x2, 3x3) and F(4x4, 3x3)), and PyTorch CPU (2 threads) when
installed.

    python -m bench.conv_speed [--quick] [--json] [--repeats N]

Milliseconds per batch, medians over the repeats after a warm-up.
"""

import numpy as np

from bench import common

import npdistill as nd

BATCH = 128


def layer_inputs(model, x):
    """The input each layer of ``model`` sees for x, and the layers' names."""
    inputs, names, counts = [], [], {}
    for layer in model.layers:
        kind = type(layer).__name__
        counts[kind] = counts.get(kind, 0) + 1
        inputs.append(x)
        names.append(f"{kind}#{counts[kind]}")
        x = layer.forward(x)
    return inputs, names


def npdistill_times(model, x, repeats):
    inputs, names = layer_inputs(model, x)
    out = {}
    for layer, xi, name in zip(model.layers, inputs, names):
        if type(layer).__name__ not in ("Conv2D", "MaxPool2D"):
            continue
        y = layer.forward(xi)
        dy = np.ones_like(y)
        fwd, _ = common.timed(lambda: layer.forward(xi), repeats)
        layer.forward(xi)
        bwd, _ = common.timed(lambda: layer.backward(dy), repeats)
        out[name] = {"forward_ms": fwd * 1e3, "backward_ms": bwd * 1e3}
    return out


def torch_times(torch, model, x, repeats):
    twin = common.to_torch(model, torch)
    inputs, names = layer_inputs(model, x)
    out = {}
    for module, layer, xi, name in zip(twin, model.layers, inputs, names):
        if type(layer).__name__ not in ("Conv2D", "MaxPool2D"):
            continue
        xt = torch.from_numpy(np.ascontiguousarray(xi)).requires_grad_(True)
        with torch.no_grad():
            fwd, _ = common.timed(lambda: module(xt), repeats)
        y = module(xt)
        dy = torch.ones_like(y)

        def backward():
            xt.grad = None
            for p in module.parameters():
                p.grad = None
            module(xt).backward(dy)
        backward()
        both, _ = common.timed(backward, repeats)
        out[name] = {"forward_ms": fwd * 1e3, "backward_ms": max(both - fwd, 0.0) * 1e3}
    return out


def main():
    repeats, args = common.repeats_from_arguments(__doc__)
    (x, _), _ = common.load_mnist()
    x = x[:BATCH]
    model = nd.architectures.papernot_mnist(seed=0)
    print(f"machine: {common.machine()}; batch {BATCH}; ms per batch, median of {repeats}")
    results = {}
    for backend in nd.kernels.available()[::-1]:
        if backend == "cuda":
            continue
        nd.kernels.use(backend)
        algorithms = ("im2col", "direct", "winograd2", "winograd4") if backend == "cython" \
            else ("im2col",)
        for algorithm in algorithms:
            nd.kernels.use_conv(algorithm)
            results[f"npdistill_{backend}_{algorithm}"] = npdistill_times(model, x, repeats)
    nd.kernels.use_conv("auto")
    torch = common.import_torch()
    if torch is not None:
        results["torch"] = torch_times(torch, model, x, repeats)
    layers = list(next(iter(results.values())))
    print(f"{'ms fwd / bwd':<26}" + "".join(f"{layer:>20}" for layer in layers))
    for name, r in results.items():
        print(f"{name:<26}" + "".join(f"{r[layer]['forward_ms']:>10.2f} /{r[layer]['backward_ms']:>7.2f}"
                                      for layer in layers))
    common.report(args, {"machine": common.machine(), "batch": BATCH, "results": results})


if __name__ == "__main__":
    main()
