"""The direct convolution kernels of this checkout against other checkouts' builds, in one
process, taking turns call by call: each pass (forward with its ReLU, input gradient,
weight gradient) of each convolution of the paper's MNIST net at batch 128.

    git worktree add /tmp/before <commit>
    (cd /tmp/before && python setup.py build_ext --inplace)
    python -m bench.direct_versus --other /tmp/before [--other DIR ...] [--repeats 21] [--json]

Every build's ``npdistill/_ext/direct*.so`` is loaded as a module of its own, so that all
of them run on the same arrays, one call each in turn, at the instruction set
``NPDISTILL_ISA`` (else the best this CPU runs). On a shared machine whose speed
drifts by 30-50% from minute to minute (bench/RESULTS.md, Machine D) this is what separates
a kernel change of 5-15% from the drift; bench/versus_checkout.py compares whole training
steps, a process per checkout. Milliseconds per call, medians over the repeats after one
warm-up, and this checkout's speed over each other's (> 1: this one is faster).
"""
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np

from bench import common

from npdistill import kernels
from npdistill.kernels.products import chunks
from npdistill.kernels.reference.conv import flipped
from npdistill.kernels.reference import direct as reference

HERE = Path(__file__).resolve().parents[1]
BATCH = 128
# the net's convolutions: input side, channels in, channels out (3 x 3, no padding)
LAYERS = {"conv1": (28, 1, 32), "conv2": (26, 32, 32), "conv3": (12, 32, 64),
          "conv4": (10, 64, 64)}


def load_build(checkout):
    """The compiled direct kernels of ``checkout`` (a folder with src/npdistill/_ext)."""
    found = sorted(Path(checkout, "src", "npdistill", "_ext").glob("direct*.so"))
    if not found:
        raise SystemExit(f"{checkout}: no built direct kernels in src/npdistill/_ext "
                         f"(run python setup.py build_ext --inplace there)")
    # the name its init function is known by; each file loads as a module object of its own
    spec = importlib.util.spec_from_file_location("npdistill._ext.direct", found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def passes(rng, level):
    """(layer, pass, call(module)) for every pass of every layer, on fixed arrays."""
    out = []
    for name, (side, c, f) in LAYERS.items():
        o = side - 2
        x = rng.standard_normal((BATCH, side, side, c), dtype=np.float32)
        dy = rng.standard_normal((BATCH, o, o, f), dtype=np.float32)
        W = rng.standard_normal((f, c, 3, 3), dtype=np.float32)
        wt, bias, y = reference.packed(W), np.zeros(f, np.float32), np.empty(dy.shape, np.float32)
        wf, dx = reference.packed(np.ascontiguousarray(flipped(W))), np.empty_like(x)
        acc = np.zeros((chunks(BATCH), 9 * c, f), np.float32)
        out.append((name, "forward", lambda m, x=x, wt=wt, bias=bias, y=y:
                    m.correlate(x, wt, bias, 3, 3, 0, 0, y, True, level)))
        if c > 1:           # the first layer's input gradient is never asked for
            out.append((name, "input gradient", lambda m, dy=dy, wf=wf, c=c, dx=dx:
                        m.correlate(dy, wf, np.zeros(c, np.float32), 3, 3, 2, 2, dx, False,
                                    level)))
        out.append((name, "weight gradient", lambda m, x=x, dy=dy, acc=acc:
                    m.weight_gradient(x, dy, 3, 3, 0, 0, acc, level)))
    return out


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
    for _ in range(args.repeats + 1):
        for layer, kind, call in work:
            for i, build in enumerate(builds):
                began = time.perf_counter()
                call(build)
                times.setdefault((layer, kind, i), []).append(time.perf_counter() - began)
    print(f"machine: {common.machine()}; isa {kernels.isa()}; batch {BATCH}; ms per call, "
          f"median of {args.repeats}; builds: " + ", ".join(map(str, checkouts)))
    rows, totals = [], [0.0] * len(builds)
    for layer, kind, _ in work:
        ms = [statistics.median(times[(layer, kind, i)][1:]) * 1e3 for i in range(len(builds))]
        totals = [t + m for t, m in zip(totals, ms)]
        rows.append({"layer": layer, "pass": kind, "ms": ms})
        print(f"{layer} {kind:<16}" + "".join(f"{m:9.2f}" for m in ms) + "   this faster by "
              + " ".join(f"{other / ms[0]:.2f}x" for other in ms[1:]))
    print(f"{'all passes':<22}" + "".join(f"{t:9.1f}" for t in totals) + "   this faster by "
          + " ".join(f"{other / totals[0]:.2f}x" for other in totals[1:]))
    common.report(args, {"machine": common.machine(), "isa": kernels.isa(),
                         "builds": [str(c) for c in checkouts], "repeats": args.repeats,
                         "rows": rows, "total_ms": totals,
                         "this_faster_by": [other / totals[0] for other in totals[1:]]})


if __name__ == "__main__":
    main()
