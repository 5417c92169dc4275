"""The compiled direct convolution and max-pooling kernels of this checkout against other
checkouts' builds, in one process, taking turns call by call (which build goes first
turning with the repeats): each pass (forward with its ReLU, input gradient, weight
gradient) of each convolution of the paper's MNIST net, and each pooling's forward and
backward, at batch 128.

    git worktree add /tmp/before <commit>
    (cd /tmp/before && python setup.py build_ext --inplace)
    python -m bench.direct_versus --other /tmp/before [--other DIR ...] [--repeats 21] [--json]

Every build's ``npdistill/_ext/direct*.so`` and ``pool*.so`` are loaded as modules of their
own, so that all of them run on the same arrays, one call each in turn, at the instruction set
``NPDISTILL_ISA`` (else the best this CPU runs). On a shared machine whose speed
drifts by 30-50% from minute to minute (bench/RESULTS.md, Machine D) this is what separates
a kernel change of 5-15% from the drift; bench/versus_checkout.py compares whole training
steps, a process per checkout. Milliseconds per call (and GFLOP/s: 2 x the pass's
multiply-adds; the convolutions only), medians over the repeats after one warm-up, and this
checkout's speed over each other's (> 1: this one is faster).
"""
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np

from bench import common
from bench.conv_speed import layer_inputs

import npdistill as nd
from npdistill import kernels
from npdistill.kernels import DIRECT_MIN_CHANNELS, channels_last
from npdistill.kernels.products import chunks
from npdistill.kernels.reference import direct as reference
from npdistill.kernels.reference.conv import flipped, gradient_padding

HERE = Path(__file__).resolve().parents[1]
BATCH = 128
EXTENSIONS = ("direct", "pool")         # the compiled modules each build is timed by


def load_build(checkout):
    """The compiled kernels of ``checkout`` (a folder with src/npdistill/_ext): {"direct":
    module, "pool": module}."""
    build = {}
    for name in EXTENSIONS:
        found = sorted(Path(checkout, "src", "npdistill", "_ext").glob(f"{name}*.so"))
        if not found:
            raise SystemExit(f"{checkout}: no built {name} kernels in src/npdistill/_ext "
                             f"(run python setup.py build_ext --inplace there)")
        # the name its init function is known by; each file loads as a module object of its own
        spec = importlib.util.spec_from_file_location(f"npdistill._ext.{name}", found[0])
        build[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build[name])
    return build


def passes(rng, level):
    """(layer, pass, GFLOP or None, call(build)) for every pass of every convolution and
    pooling of the paper's MNIST net (its shapes, padding and window read from the net), on
    fixed arrays."""
    model = nd.architectures.papernot_mnist(seed=0)
    inputs, names = layer_inputs(model, rng.random((BATCH, 1, 28, 28), dtype=np.float32))
    out = []
    for layer, xi, name in zip(model.layers, inputs, names):
        if isinstance(layer, nd.nn.layers.MaxPool2D):
            out.extend(pool_passes(rng, layer, np.ascontiguousarray(channels_last(xi)), name))
        if not isinstance(layer, nd.nn.layers.Conv2D):
            continue
        c, f, k, pads = layer.in_channels, layer.out_channels, layer.kernel_size, layer.pads
        x = np.ascontiguousarray(channels_last(xi))
        oh, ow = layer.output_shape(xi.shape)[2:]
        gflop = 2 * BATCH * oh * ow * f * c * k * k / 1e9
        dy = rng.standard_normal((BATCH, oh, ow, f), dtype=np.float32)
        W = layer.params["W"]
        wt, bias, y = reference.packed(W), np.zeros(f, np.float32), np.empty(dy.shape, np.float32)
        back = gradient_padding(pads, k)
        wf, dx = reference.packed(np.ascontiguousarray(flipped(W))), np.empty_like(x)
        acc = np.zeros((chunks(BATCH), k * k * c, f), np.float32)
        out.append((name, "forward", gflop, lambda m, x=x, wt=wt, bias=bias, y=y, k=k, p=pads:
                    m["direct"].correlate(x, wt, bias, k, k, p[0], p[2], y, True, level)))
        if c >= DIRECT_MIN_CHANNELS:    # else the layer's input gradient is im2col's
            out.append((name, "input gradient", gflop,
                        lambda m, dy=dy, wf=wf, c=c, dx=dx, k=k, p=back:
                        m["direct"].correlate(dy, wf, np.zeros(c, np.float32), k, k, p[0], p[2], dx,
                                    False, level)))
        out.append((name, "weight gradient", gflop, lambda m, x=x, dy=dy, acc=acc, k=k, p=pads:
                    m["direct"].weight_gradient(x, dy, k, k, p[0], p[2], acc, level)))
    return out


def pool_passes(rng, layer, x, name):
    """The pooling's forward and backward on x (N, H, W, C), the rectified activations it
    sees in the net."""
    n, h, w, c = x.shape
    s = layer.size
    out = np.empty((n, h // s, w // s, c), np.float32)
    argmax = np.empty(out.shape, np.int64)
    dy, dx = rng.standard_normal(out.shape, dtype=np.float32), np.empty_like(x)
    return [(name, "forward", None, lambda m: m["pool"].maxpool_forward(x, s, out, argmax)),
            (name, "backward", None, lambda m: m["pool"].maxpool_backward(dy, argmax, s, dx))]


def main():
    made = common.parser(__doc__, repeats=21)
    made.add_argument("--other", action="append", required=True,
                      help="another checkout with its kernels built (repeatable)")
    args = made.parse_args()
    checkouts = [HERE] + [Path(other).resolve() for other in args.other]
    builds = [load_build(checkout) for checkout in checkouts]
    level = kernels.isa_level()
    if level < 1:
        raise SystemExit(f"the direct kernels do not run here (isa {kernels.isa()})")
    work = passes(np.random.default_rng(0), level)
    times = {}
    for repeat in range(args.repeats + 1):
        for layer, kind, _, call in work:
            # the builds' order turns with the repeat: the first of a turn took up to 1.3x
            # as long in the small pooling passes, whichever build it was
            for i in np.roll(np.arange(len(builds)), repeat):
                began = time.perf_counter()
                call(builds[i])
                times.setdefault((layer, kind, i), []).append(time.perf_counter() - began)
    print(f"machine: {common.machine()}; isa {kernels.isa()}; batch {BATCH}; ms per call, "
          f"median of {args.repeats}; builds: " + ", ".join(map(str, checkouts)))
    rows, totals = [], [0.0] * len(builds)
    for layer, kind, gflop, _ in work:
        ms = [statistics.median(times[(layer, kind, i)][1:]) * 1e3 for i in range(len(builds))]
        totals = [t + m for t, m in zip(totals, ms)]
        rate = [gflop / (m / 1e3) for m in ms] if gflop else None
        rows.append({"layer": layer, "pass": kind, "gflop": gflop, "ms": ms, "gflop_s": rate})
        print(f"{layer:<12} {kind:<16}" + "".join(f"{m:9.2f}" for m in ms)
              + ("   GFLOP/s " + " ".join(f"{r:4.0f}" for r in rate) if rate else
                 " " * (10 + 5 * len(ms) - 1))
              + "   this faster by " + " ".join(f"{other / ms[0]:.2f}x" for other in ms[1:]))
    print(f"{'all passes':<29}" + "".join(f"{t:9.1f}" for t in totals) + "   this faster by "
          + " ".join(f"{other / totals[0]:.2f}x" for other in totals[1:]))
    common.report(args, {"machine": common.machine(), "isa": kernels.isa(),
                         "builds": [str(c) for c in checkouts], "repeats": args.repeats,
                         "rows": rows, "total_ms": totals,
                         "this_faster_by": [other / totals[0] for other in totals[1:]]})


if __name__ == "__main__":
    main()
