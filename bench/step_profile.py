"""Where a training step of the paper's MNIST net spends its time (batch 128).

    python -m bench.step_profile [--backend cython] [--repeats 30] [--json]

Every layer's forward and backward is timed, and inside the convolution and
pooling layers the compiled kernels (the direct convolution's correlations -- forward
and input gradient -- and weight gradient, im2col,
col2im, max-pool forward and backward) separately, their time included in their
layer's; a convolution's or a dense layer's time less its kernels' is its GEMMs
(np.matmul into OpenBLAS), its bias gradient and a little Python. What no layer
accounts for (the loss, the SGD update, the step's Python) is "other".
Medians over the repeats after warm-up, in ms per step and in % of the step.
"""
import collections
import statistics
import time

import numpy as np

from bench import common

import npdistill as nd
from npdistill import kernels
from npdistill.kernels import conv as kernels_conv
from npdistill.kernels import convolution

# the direct input gradient is a direct_correlate (of dy with the flipped kernels): timed there
DIRECT = ("direct_correlate", "direct_weight_gradient")
KERNELS = DIRECT + ("im2col", "col2im", "maxpool_forward", "maxpool_backward")


def instrument(model, clock):
    """Wrap the model's layers and the kernels so that every call adds its time to clock.
    A kernel is wrapped in every module that looks it up by its own name (the package,
    kernels.conv, whose input gradient calls direct_correlate, and kernels.convolution,
    whose algorithms call them): wrapped in the package alone, the direct kernels' time
    went unseen and was counted as the layers' GEMMs."""
    for name in KERNELS:
        real = getattr(kernels, name)

        def timed(*args, _real=real, _name=name, **kwargs):
            began = time.perf_counter()
            out = _real(*args, **kwargs)
            clock[f"kernel {_name}"] += time.perf_counter() - began
            return out
        for module in (kernels, kernels_conv, convolution):
            if getattr(module, name, None) is real:
                setattr(module, name, timed)
    for i, layer in enumerate(model.layers):
        tag = f"{i} {type(layer).__name__}"
        for method in ("forward", "backward", "forward_rectified"):
            if not hasattr(layer, method):
                continue
            real = getattr(layer, method)

            def timed(*args, _real=real, _key=f"{tag} {method}", **kwargs):
                began = time.perf_counter()
                out = _real(*args, **kwargs)
                clock[_key] += time.perf_counter() - began
                return out
            setattr(layer, method, timed)


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--backend", default=None, help="default: the library's default")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    if args.backend:
        kernels.use(args.backend)
    (x, y), _ = nd.datasets.load_mnist()
    model = nd.architectures.papernot_mnist(seed=0)
    model.set_rng(np.random.default_rng(0))
    optimizer = nd.nn.SGD(0.1, 0.5)
    xb, yb = x[:128], y[:128]
    clock = collections.Counter()
    instrument(model, clock)
    samples = collections.defaultdict(list)
    for repeat in range(args.repeats + 3):                  # 3 warm-up steps
        clock.clear()
        began = time.perf_counter()
        logits = model.forward(xb, training=True)
        _, dlogits = nd.cross_entropy(logits, yb)
        model.backward(dlogits, input_grad=False)
        optimizer.step(model.params, model.grads, 0)
        total = time.perf_counter() - began
        if repeat < 3:
            continue
        for key, seconds in clock.items():
            samples[key].append(seconds)
        samples["step"].append(total)
        layers = sum(v for k, v in clock.items() if not k.startswith("kernel"))
        samples["other (loss, SGD update, step overhead)"].append(total - layers)
    median = {key: 1e3 * statistics.median(v) for key, v in samples.items()}
    step = median["step"]
    print(f"{common.machine()}; backend {kernels.backend()}; batch 128; medians of "
          f"{args.repeats} steps: {step:.1f} ms per step ({128e3 / step:,.0f} images/s)")
    for key in sorted(median, key=lambda k: -median[k]):
        if key != "step":
            print(f"  {key:44s} {median[key]:7.2f} ms  {100 * median[key] / step:5.1f}%")
    # the GEMM share: the conv and dense layers' time less their kernels'
    conv_dense = sum(v for k, v in median.items() if ("Conv2D" in k or "Dense" in k))
    conv_kernels = sum(median.get(f"kernel {k}", 0) for k in ("im2col", "col2im"))
    direct = sum(median.get(f"kernel {k}", 0) for k in DIRECT)
    gemm = conv_dense - conv_kernels - direct
    pooling = sum(v for k, v in median.items() if "MaxPool2D" in k)
    summary = {"backend": kernels.backend(), "step_ms": step, "img_s": 128e3 / step,
               "direct_conv_ms": direct, "gemm_and_layer_python_ms": gemm,
               "im2col_col2im_ms": conv_kernels, "pooling_ms": pooling,
               "relu_dropout_flatten_ms": sum(v for k, v in median.items()
                                              if any(t in k for t in ("ReLU", "Dropout", "Flatten"))),
               "other_ms": median["other (loss, SGD update, step overhead)"], "per_key_ms": median}
    print(f"direct convolution kernels {direct:.1f} ms ({100 * direct / step:.0f}%), GEMM + bias "
          f"gradients + the layers' Python {gemm:.1f} ms ({100 * gemm / step:.0f}%), im2col + "
          f"col2im {conv_kernels:.1f} ms ({100 * conv_kernels / step:.0f}%), pooling "
          f"{pooling:.1f} ms ({100 * pooling / step:.0f}%), ReLU/Dropout/Flatten "
          f"{summary['relu_dropout_flatten_ms']:.1f} ms, other {summary['other_ms']:.1f} ms")
    common.report(args, summary)


if __name__ == "__main__":
    main()
