"""A training step and inference (batch 128) of the paper's MNIST net, convolutions by
im2col, by Winograd F(4x4, 3x3) and by ``kernels.use_conv("auto")`` (the direct kernels
where the CPU has AVX-512F), in turns, in this one process: run it under different
thread settings
of NumPy's OpenBLAS, which must be set before NumPy loads, e.g.

    python -m bench.conv_threads
    OPENBLAS_NUM_THREADS=1 python -m bench.conv_threads
    OPENBLAS_THREAD_TIMEOUT=4 python -m bench.conv_threads

Milliseconds, medians of 15 calls after a warm-up, two rounds each.
"""

from bench import common

import npdistill as nd


def main():
    (x, y), _ = common.load_mnist()
    model, optimizer = nd.architectures.papernot_mnist(seed=0), nd.nn.SGD(0.1, 0.5)
    xb, yb = x[:128], y[:128]

    def step():
        logits = model.forward(xb, training=True)
        _, dlogits = nd.cross_entropy(logits, yb)
        model.backward(dlogits, input_grad=False)
        optimizer.step(model.params, model.grads, 0)

    print(f"machine: {common.machine()}")
    for algorithm in ("im2col", "winograd4", "auto") * 2:
        nd.kernels.use_conv(algorithm)
        for name, fn in (("inference", lambda: model.forward(xb)), ("training step", step)):
            print(f"{algorithm:<9} {name:<14} {common.median_ms(fn, 15):7.1f} ms", flush=True)


if __name__ == "__main__":
    main()
