"""This checkout's training step and inference against another checkout's, on this machine.

    git worktree add /tmp/before <commit>
    (cd /tmp/before && python setup.py build_ext --inplace)
    python -m bench.versus_checkout --other /tmp/before [--pairs 10] [--json]

bench/train_speed.py's workloads (the paper's MNIST net, a training step at batch 128 and
inference at batch 1,024; the cython backend, the convolution NPDISTILL_CONV names, else
"auto") and two attack loops (JSMA on 10 images, CW L2 100 steps on 10), timed in a fresh
process per checkout (``--other``'s src/ first on PYTHONPATH), the two taking turns
``--pairs`` times: images/s as the median of each process's 40 steps (8 inferences, 3
attacks) after 5 warm-up steps, then the median over the processes, their ratio this /
other and the median of each pair's ratio. A before/after check of a change that must not
cost speed (issue 39: within 5%; issue 40: the same speed).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import common

HERE = Path(__file__).resolve().parents[1]


def measure():
    """In a child: this process's npdistill timed on train_speed.py's workloads (the cython
    backend, the convolution NPDISTILL_CONV names, else "auto"); one JSON line."""
    import npdistill as nd
    from bench.train_speed import npdistill_workloads
    (x, y), _ = common.load_mnist()
    work = npdistill_workloads(x, y, "cython", os.environ.get("NPDISTILL_CONV", "auto"))
    for _ in range(5):
        work["train_step_b128"]()
    # the attacks' loops on the net as it starts (the same bits in both checkouts, so the
    # same iterations): JSMA on 10 images (one target each), CW L2 100 steps on 10
    net, xa, target = nd.architectures.papernot_mnist(seed=0), x[:10], (y[:10] + 1) % 10
    jsma = lambda: nd.attacks.jsma(net, xa, target=target, progress=False)    # noqa: E731
    cw = lambda: nd.attacks.cw_l2(net, xa, target=target, max_iterations=100,  # noqa: E731
                                  binary_search_steps=1, progress=False)
    print(json.dumps({"package": nd.__file__,
                      "train_step_b128": 128 / common.timed(work["train_step_b128"], 40)[0],
                      "inference_b1024": 1024 / common.timed(work["inference_b1024"], 8)[0],
                      "jsma_10": 10 / common.timed(jsma, 3)[0],
                      "cw_l2_10x100": 10 / common.timed(cw, 3)[0]}))


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--other", type=Path, help="the other checkout (extensions built)")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return measure()
    if args.other is None or not (args.other / "src" / "npdistill").is_dir():
        parser.error(f"--other must be a checkout holding src/npdistill, got {args.other}")
    if args.pairs < 1:
        parser.error(f"--pairs must be a positive integer, got {args.pairs}")
    runs = {"this": [], "other": []}
    for pair in range(args.pairs):
        for name, path in (("other", args.other / "src"), ("this", HERE / "src")):
            env = {**os.environ, "PYTHONPATH": str(path)}
            out = subprocess.run([sys.executable, "-m", "bench.versus_checkout", "--child"], env=env, check=True,
                                 capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            assert Path(row["package"]).is_relative_to(path), row["package"]
            runs[name].append(row)
        print(f"pair {pair + 1}/{args.pairs}", file=sys.stderr, flush=True)
    summary = {}
    print(f"machine: {common.machine()}; {args.pairs} processes each, in turns")
    for key in ("train_step_b128", "inference_b1024", "jsma_10", "cw_l2_10x100"):
        this, other = (float(np.median([r[key] for r in runs[n]])) for n in ("this", "other"))
        # each pair's ratio too: two processes in a row see the same load on a shared machine
        paired = float(np.median([t[key] / o[key] for t, o in zip(runs["this"], runs["other"])]))
        summary[key] = {"this": this, "other": other, "ratio": this / other,
                        "median_pair_ratio": paired}
        print(f"{key}: this {this:,.0f} img/s, other {other:,.0f} img/s, ratio {this / other:.3f}"
              f" (median of the pairs' ratios {paired:.3f})")
    common.report(args, {"summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
