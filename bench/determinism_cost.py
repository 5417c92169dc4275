"""What the same bits on any thread count cost: the MNIST net's training step (batch 128)
and inference (batch 1024) with the layers' products in pieces fixed by the shapes
(kernels.matmul, the default) against the same step with NumPy's threaded BLAS (np.matmul,
whose bits change with the thread count), in turns in one process.

    python -m bench.determinism_cost [--quick] [--json] [--repeats N]

Medians over blocks of 5 calls, the two contenders alternating block by block.
"""
import time

import numpy as np

from bench import common

import npdistill as nd
from npdistill import kernels

PRODUCTS = {
    "pieces": (kernels.matmul, kernels.column_sums),
    "numpy_blas": (lambda a, b, out=None: np.matmul(a, b, out=out),
                   lambda a: np.ones(len(a), a.dtype) @ a),
}


def use(name):
    """The products of the layers (Dense: kernels.matmul; im2col: kernels.convolution's) and
    the bias gradients; im2col's weight gradient keeps its chunks of images either way."""
    kernels.matmul, kernels.column_sums = PRODUCTS[name]
    kernels.convolution.matmul = PRODUCTS[name][0]


def main():
    repeats, args = common.repeats_from_arguments(__doc__)
    kernels.use("cython")
    (x, y), _ = common.load_mnist()
    model = nd.architectures.papernot_mnist(seed=0)
    model.set_rng(np.random.default_rng(0))
    xb, yb, xi = x[:128], y[:128], x[:1024]

    def step():
        _, dz = nd.cross_entropy(model.forward(xb, training=True), yb)
        model.backward(dz)

    work = {"train_step_b128": (step, 128), "inference_b1024": (lambda: model.logits(xi), 1024)}
    times = {(name, w): [] for name in PRODUCTS for w in work}
    for name in PRODUCTS:                                   # warm-up
        use(name)
        for fn, _ in work.values():
            fn()
    for r in range(repeats):
        for name in (PRODUCTS if r % 2 else reversed(list(PRODUCTS))):
            use(name)
            for w, (fn, _) in work.items():
                for _ in range(5):
                    began = time.perf_counter()
                    fn()
                    times[name, w].append(time.perf_counter() - began)
    use("pieces")
    rates = {name: {w: work[w][1] / float(np.median(times[name, w])) for w in work}
             for name in PRODUCTS}
    print(f"machine: {common.machine()}; median of {repeats} x 5 alternating calls")
    for name, row in rates.items():
        print(f"{name:11s} " + "   ".join(f"{w} {v:8,.0f} img/s" for w, v in row.items()))
    ratio = {w: rates["pieces"][w] / rates["numpy_blas"][w] for w in work}
    print("pieces / numpy_blas: " + ", ".join(f"{w} {v:.3f}" for w, v in ratio.items()))
    common.report(args, {"machine": common.machine(), "repeats": repeats, "img_s": rates,
                          "ratio": ratio})


if __name__ == "__main__":
    main()
