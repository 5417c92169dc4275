"""Where an attack step's network passes go: the paper's MNIST net, one batch of test
images, every layer's inference forward and input-only backward timed, beside
PyTorch's forward (no grad), forward + input gradient, and forward + input and
weight gradients (what torchattacks' CW runs per step) on a twin with the same
weights.

    python -m bench.attack_pass_profile [--images 100] [--repeats 30] [--json]

Medians over the repeats after warm-up, in ms per pass of the whole batch.
"""
import statistics
import time

import numpy as np

from bench import common

import npdistill as nd


def gemm_peak_gflops(repeats, size=2048):
    """This machine's float32 GEMM throughput through NumPy's BLAS: median GFLOP/s."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    return 2 * size ** 3 / common.median_ms(lambda: a @ a, repeats) / 1e6


def layer_flops(layer, y):
    """Flops of ``layer``'s forward giving output y (= those of its input backward):
    2 per multiply-add of a convolution or dense layer, 0 for the others."""
    kind = type(layer).__name__
    if kind == "Conv2D":
        return 2 * y.size * layer.in_channels * layer.kernel_size ** 2
    if kind == "Dense":
        return 2 * y.size * layer.in_features
    return 0


def layer_times(model, x, repeats):
    """(forward ms, backward ms, flops) per layer: medians over ``repeats`` passes."""
    forward = [[] for _ in model.layers]
    backward = [[] for _ in model.layers]
    flops = [0] * len(model.layers)
    for r in range(repeats + 1):                          # the first pass warms up
        h = x
        for i, layer in enumerate(model.layers):
            began = time.perf_counter()
            h = layer.forward(h, False)
            forward[i].append(time.perf_counter() - began)
            flops[i] = layer_flops(layer, h)
        dy = np.ones_like(h)
        for i in reversed(range(len(model.layers))):
            began = time.perf_counter()
            dy = model.layers[i].backward(dy, param_grads=False)
            backward[i].append(time.perf_counter() - began)
    return ([statistics.median(t[1:]) * 1e3 for t in forward],
            [statistics.median(t[1:]) * 1e3 for t in backward], flops)


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

    return {"torch_forward": common.median_ms(forward, repeats),
            "torch_forward_input_grad": common.median_ms(with_grads(False), repeats),
            "torch_forward_input_and_weight_grads": common.median_ms(with_grads(True), repeats)}


def gflops(flops, ms):
    return flops / ms / 1e6 if ms > 0 else float("nan")


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--backward-share", type=float, default=1.0,
                        help="share of the images an attack step backpropagates (for the floor)")
    args = parser.parse_args()
    if not 0 <= args.backward_share <= 1:
        parser.error(f"--backward-share must lie in [0, 1], got {args.backward_share}")
    model = nd.placement.passes(common.trained_mnist())
    _, (x_test, _) = common.load_mnist()
    x = np.ascontiguousarray(x_test[:args.images])
    print(f"machine: {common.machine()}; backend {nd.kernels.backend()}; "
          f"{args.images} images; medians of {args.repeats}")
    forward, backward, flops = layer_times(model, x, args.repeats)
    rows = []
    for layer, f, b, n in zip(model.layers, forward, backward, flops):
        rows.append({"layer": repr(layer), "forward_ms": f, "backward_ms": b, "gflop": n / 1e9})
        rate = f"   {n / 1e9:5.3f} GFLOP: {gflops(n, f):4.0f} / {gflops(n, b):4.0f} GFLOP/s" \
            if n else ""
        print(f"{repr(layer):<48} forward {f:7.2f} ms   input backward {b:7.2f} ms{rate}")
    total = sum(flops)
    summary = {"machine": common.machine(), "images": args.images, "layers": rows,
               "npdistill_forward": sum(forward), "npdistill_input_backward": sum(backward),
               "gflop_per_pass": total / 1e9}
    print(f"{'npdistill, whole net':<48} forward {sum(forward):7.2f} ms   "
          f"input backward {sum(backward):7.2f} ms   {total / 1e9:5.3f} GFLOP: "
          f"{gflops(total, sum(forward)):4.0f} / {gflops(total, sum(backward)):4.0f} GFLOP/s")
    summary.update(torch_times(model, x, args.repeats))
    for key in ("torch_forward", "torch_forward_input_grad",
                "torch_forward_input_and_weight_grads"):
        if key in summary:
            print(f"{key.replace('_', ' '):<48} {summary[key]:7.2f} ms")
    if "torch_forward" in summary:
        print(f"{'':<48} PyTorch's forward: {gflops(total, summary['torch_forward']):4.0f} "
              f"GFLOP/s")

    peak = gemm_peak_gflops(max(5, args.repeats // 3))
    floor_forward = total / peak / 1e6
    floor_step = floor_forward * (1 + args.backward_share)
    summary.update(gemm_peak_gflops=peak, floor_forward_ms=floor_forward,
                   backward_share=args.backward_share, floor_attack_step_ms=floor_step)
    print(f"float32 GEMM peak (NumPy's BLAS, 2048^3): {peak:.0f} GFLOP/s; at that peak the "
          f"forward's arithmetic alone takes {floor_forward:.2f} ms")
    print(f"an attack step (forward, input backward of {args.backward_share:.0%} of the "
          f"images): floor {floor_step:.2f} ms, npdistill "
          f"{sum(forward) + args.backward_share * sum(backward):.2f} ms")
    if "torch_forward_input_and_weight_grads" in summary:
        third = summary["torch_forward_input_and_weight_grads"] / 3
        summary["torch_step_over_3_ms"] = third
        print(f"a third of PyTorch's step (what 3x torchattacks' CW needs): {third:.2f} ms; "
              f"the floor is {floor_step / third:.0%} of it")
    common.report(args, summary)


if __name__ == "__main__":
    main()
