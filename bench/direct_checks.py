"""The direct convolution kernels' figures that are not speed ratios against a peer: the
command behind bench/RESULTS.md's "Direct convolution in AVX-512 registers" section.

    python -m bench.direct_checks [--repeats 30] [--training] [--json]

- kernels: ms of the passes the defaults were chosen by, alternatives side by side (the
  first layer's 1-channel input gradient direct vs col2im, conv 2's bias gradient by
  NumPy's ``sum(axis=0)`` vs ``kernels.column_sums``, max pooling of conv 2's output);
- error: float32 error, max |y32 - y64| / sum |x||W| over the receptive field, over 60
  random layers (1-64 channels, both paddings), direct vs im2col + sgemm;
- ties: the paper's MNIST net (seed 0) on 128 training images: the pooling windows after
  conv 2 + ReLU that hold a positive tie in float64, how many of them each float32
  algorithm keeps, how many argmaxes move, and the whole net's input and parameter
  gradients against float64's (max |difference| / max |float64 gradient|, the worst
  parameter);
- with --training: two epochs on 3,000 images, seeds 0-3, the T = 1 net and the
  defensive-distillation teachers and students at T = 20, 50, 100 (test accuracy on
  2,000 images): the spread tests/defenses/test_distillation.py's margins come from.
"""
import sys

import numpy as np

from bench import common

import npdistill as nd
from npdistill import kernels
from npdistill.kernels.reference import direct as reference


def kernel_times(repeats):
    rng = np.random.default_rng(0)
    out = {}
    dy1 = rng.standard_normal((128, 26, 26, 32)).astype(np.float32)      # conv 1's output
    W1 = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    out["conv1_input_gradient_direct_ms"] = common.median_ms(
        lambda: kernels.direct_input_gradient(dy1, W1, (0, 0, 0, 0)), repeats)
    W2 = W1.transpose(0, 2, 3, 1).reshape(32, -1)
    dcols = np.empty((len(dy1) * 26 * 26, 9), np.float32)

    def col2im():
        np.matmul(dy1.reshape(-1, 32), W2, out=dcols)
        kernels.col2im(dcols, (128, 1, 28, 28), 3, 3, (0, 0, 0, 0))
    out["conv1_input_gradient_im2col_ms"] = common.median_ms(col2im, repeats)
    dy2 = rng.standard_normal((128 * 24 * 24, 32)).astype(np.float32)    # conv 2's gradient
    out["conv2_bias_gradient_sum_ms"] = common.median_ms(lambda: dy2.sum(axis=0), repeats)
    out["conv2_bias_gradient_column_sums_ms"] = common.median_ms(
        lambda: nd.kernels.column_sums(dy2), repeats)
    x = kernels.empty_nchw((128, 32, 24, 24), np.float32)
    x[...] = rng.standard_normal(x.shape)
    y, argmax = kernels.maxpool_forward(x, 2)
    dy = kernels.empty_nchw(y.shape, np.float32)
    dy[...] = 1
    out["maxpool_forward_ms"] = common.median_ms(
        lambda: kernels.maxpool_forward(x, 2, argmax=argmax), repeats)
    out["maxpool_backward_ms"] = common.median_ms(lambda: kernels.maxpool_backward(dy, argmax, x.shape, 2),
                                    repeats)
    return out


def float32_error(layers=60):
    """max over random layers of max |y32 - y64| / sum |x||W|, direct and im2col + sgemm."""
    rng = np.random.default_rng(0)
    worst = {"direct": 0.0, "im2col": 0.0}
    for _ in range(layers):
        n, c = int(rng.integers(1, 4)), int(rng.choice([1, 3, 16, 32, 64]))
        f, h, pad = int(rng.choice([16, 32, 64, 70])), int(rng.integers(6, 20)), int(rng.integers(0, 2))
        pads = (pad, pad, pad, pad)
        x = rng.standard_normal((n, h, h, c)).astype(np.float32)
        W = rng.standard_normal((f, c, 3, 3)).astype(np.float32)
        wt = reference.packed(W)
        shape = (n, h + 2 * pad - 2, h + 2 * pad - 2, f)
        exact, scale, by_gemm = np.empty(shape), np.empty(shape), np.empty(shape, np.float32)
        reference.correlate(x.astype(np.float64), wt.astype(np.float64), 0.0, 3, 3, pad, pad, exact)
        reference.correlate(np.abs(x).astype(np.float64), np.abs(wt).astype(np.float64), 0.0, 3,
                            3, pad, pad, scale)
        reference.correlate(x, wt, np.float32(0), 3, 3, pad, pad, by_gemm)
        with kernels.using_conv("direct"):
            by_direct = kernels.direct_correlate(x, W, pads)
        for name, y in (("direct", by_direct), ("im2col", by_gemm)):
            worst[name] = max(worst[name], float((np.abs(y - exact) / scale).max()))
    return worst


def pool_windows(a):
    n, h, w, c = a.shape
    return a.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(
        n, h // 2, w // 2, c, 4)


def ties(x, y):
    """Positive ties in conv 2 + ReLU's pooling windows, and the whole net's input gradient,
    float32 im2col and direct against float64."""
    model = nd.architectures.papernot_mnist(seed=0)
    runs = {}
    for name, dtype, algorithm in (("float64", np.float64, "im2col"),
                                   ("im2col", np.float32, "im2col"),
                                   ("direct", np.float32, "direct")):
        net = model.astype(dtype)
        net.set_rng(np.random.default_rng(0))
        with kernels.using_conv(algorithm):
            logits = net.forward(x.astype(dtype), training=True)
            _, dlogits = nd.cross_entropy(logits, y)
            dx = net.backward(dlogits)
            grads = {key: value.copy() for key, value in net.grads.items()}
            h = x.astype(dtype)
            for layer in net.layers[:4]:                      # conv, ReLU, conv, ReLU
                h = layer.forward(h)
        runs[name] = pool_windows(kernels.channels_last(h)), dx, grads
    windows64, dx64, grads64 = runs["float64"]
    tied = ((windows64 == windows64.max(-1, keepdims=True)).sum(-1) > 1) & (windows64.max(-1) > 0)
    out = {"ties_float64": int(tied.sum())}
    for name in ("im2col", "direct"):
        windows, dx, grads = runs[name]
        kept = ((windows == windows.max(-1, keepdims=True)).sum(-1) > 1) & tied
        out[f"ties_kept_{name}"] = int(kept.sum())
        out[f"argmax_moved_{name}"] = int((windows.argmax(-1) != windows64.argmax(-1)).sum())
        out[f"input_gradient_error_{name}"] = float(np.abs(dx - dx64).max() / np.abs(dx64).max())
        out[f"parameter_gradient_error_{name}"] = max(
            float(np.abs(grads[k] - g).max() / np.abs(g).max()) for k, g in grads64.items())
    return out


def training_spread(x, y, x_test, y_test):
    rows = []
    for seed in range(4):
        base, _ = nd.train(nd.architectures.papernot_mnist(seed=seed), (x, y), epochs=2,
                           progress=False, seed=seed)
        row = {"seed": seed, "T1": nd.metrics.accuracy(base, x_test, y_test)}
        for T in (20, 50, 100):
            teacher, student = nd.defensive_distillation(nd.architectures.papernot_mnist, (x, y),
                                                         T, epochs=2, progress=False, seed=seed)
            row[f"teacher_T{T}"] = nd.metrics.accuracy(teacher, x_test, y_test)
            row[f"student_T{T}"] = nd.metrics.accuracy(student, x_test, y_test)
        print("  " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in row.items()), flush=True)
        rows.append(row)
    return rows


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--training", action="store_true", help="also the 2-epoch spread")
    args = parser.parse_args()
    kernels.use("cython")
    if not kernels.has("direct"):
        sys.exit("the direct kernels do not run here (they need the cython build and AVX-512F)")
    print(f"machine: {common.machine()}")
    result = {"kernels_ms": kernel_times(args.repeats)}
    for key, value in result["kernels_ms"].items():
        print(f"  {key:36s} {value:7.3f}")
    result["float32_error"] = float32_error()
    print("float32 error / sum |x||W|: " + ", ".join(f"{k} {v:.2e}"
                                                   for k, v in result["float32_error"].items()))
    (x, y), (x_test, y_test) = common.load_mnist()
    result["ties"] = ties(x[:128], y[:128])
    print("pooling ties and input gradients: " + ", ".join(
        f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}" for k, v in result["ties"].items()))
    if args.training:
        print("two epochs on 3,000 images (test accuracy on 2,000):")
        result["training"] = training_spread(x[:3000], y[:3000], x_test[:2000], y_test[:2000])
    common.report(args, result)


if __name__ == "__main__":
    main()
