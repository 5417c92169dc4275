"""Where an attack step's network passes go: the paper's MNIST net, one batch of test
images, every layer's inference forward and input-only backward timed, beside
PyTorch's forward (no grad), forward + input gradient, and forward + input and
weight gradients (what torchattacks' CW runs per step) on a twin with the same
weights.

    python bench/attack_pass_profile.py [--images 100] [--repeats 30] [--json]

Medians over the repeats after warm-up, in ms per pass of the whole batch.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import npdistill as nd  # noqa: E402


def median_ms(fn, repeats):
    fn()                                                  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e3


def layer_times(model, x, repeats):
    """(forward ms, backward ms) per layer: medians over ``repeats`` passes."""
    forward = [[] for _ in model.layers]
    backward = [[] for _ in model.layers]
    for r in range(repeats + 1):                          # the first pass warms up
        h = x
        for i, layer in enumerate(model.layers):
            began = time.perf_counter()
            h = layer.forward(h, False)
            forward[i].append(time.perf_counter() - began)
        dy = np.ones_like(h)
        for i in reversed(range(len(model.layers))):
            began = time.perf_counter()
            dy = model.layers[i].backward(dy, param_grads=False)
            backward[i].append(time.perf_counter() - began)
    return ([statistics.median(t[1:]) * 1e3 for t in forward],
            [statistics.median(t[1:]) * 1e3 for t in backward])


def torch_times(model, x, repeats):
    torch = common.import_torch()
    if torch is None:
        return {}
    twin = common.to_torch(model, torch)
    xs = torch.from_numpy(x)

    def forward():
        with torch.no_grad():
            twin(xs)

    def with_grads(weights):
        for p in twin.parameters():
            p.requires_grad_(weights)
        inputs = xs.clone().requires_grad_(True)

        def step():
            twin.zero_grad(set_to_none=True)
            twin(inputs).sum().backward()
        return step

    return {"torch_forward": median_ms(forward, repeats),
            "torch_forward_input_grad": median_ms(with_grads(False), repeats),
            "torch_forward_input_and_weight_grads": median_ms(with_grads(True), repeats)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    model = common.trained_mnist().for_backend()
    _, (x_test, _) = common.load_mnist()
    x = np.ascontiguousarray(x_test[:args.images])
    print(f"machine: {common.machine()}; backend {nd.kernels.backend()}; "
          f"{args.images} images; medians of {args.repeats}")
    forward, backward = layer_times(model, x, args.repeats)
    rows = []
    for layer, f, b in zip(model.layers, forward, backward):
        rows.append({"layer": repr(layer), "forward_ms": f, "backward_ms": b})
        print(f"{repr(layer):<48} forward {f:7.2f} ms   input backward {b:7.2f} ms")
    summary = {"machine": common.machine(), "images": args.images, "layers": rows,
               "npdistill_forward": sum(forward), "npdistill_input_backward": sum(backward)}
    print(f"{'npdistill, whole net':<48} forward {sum(forward):7.2f} ms   "
          f"input backward {sum(backward):7.2f} ms")
    summary.update(torch_times(model, x, args.repeats))
    for key in ("torch_forward", "torch_forward_input_grad",
                "torch_forward_input_and_weight_grads"):
        if key in summary:
            print(f"{key.replace('_', ' '):<48} {summary[key]:7.2f} ms")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
