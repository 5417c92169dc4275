"""How large a block of images Conv2D should im2col and multiply at once
(npdistill.kernels.convolution.BLOCK_BYTES), and how large a thread's block in the weight
gradient (--weight: WEIGHT_BLOCK_BYTES): a training step at batch 128 and a
JSMA-like pass (forward 100 images, backward 2 seeds each) per block size, the
convolutions run as im2col (the only algorithm that blocks this way).

    python -m bench.blocking [--weight] [--quick] [--json] [--rounds N]

Each block size runs in its own process (switching sizes in one process
reallocates the layers' buffers and bills the page faults to whichever size
comes next), the processes alternate round after round so that the machine's
passing load hits them all, and each reports the median of 15 calls.
"""
import argparse
import json
import statistics
import subprocess
import sys

import numpy as np

from bench import common

SIZES = {"BLOCK_BYTES": {"one block": 1 << 40, "1 MB": 1 << 20, "2 MB": 1 << 21,
                          "4 MB": 1 << 22},
         "WEIGHT_BLOCK_BYTES": {"256 kB": 1 << 18, "512 kB": 1 << 19, "1 MB": 1 << 20,
                                "2 MB": 1 << 21}}


def measure(constant, block_bytes, calls=15):
    """Median ms of a training step and of a JSMA-like pass with this block size."""
    import npdistill as nd
    setattr(nd.kernels.convolution, constant, block_bytes)
    nd.kernels.use_conv("im2col")
    (x, y), _ = common.load_mnist()
    model = nd.architectures.papernot_mnist(seed=0)
    optimizer = nd.nn.SGD(0.1, 0.5)
    model.set_rng(np.random.default_rng(0))
    seeds = np.ones((200, 10), np.float32)

    def step():
        logits = model.forward(x[:128], training=True)
        _, dlogits = nd.cross_entropy(logits, y[:128])
        model.backward(dlogits, input_grad=False)
        optimizer.step(model.params, model.grads, 0)

    def jsma_like():
        model.forward(x[:100])
        model.backward(seeds, param_grads=False)

    result = {}
    for name, fn in (("train_step_b128", step), ("jsma_like_pass", jsma_like)):
        result[name] = common.median_ms(fn, calls)
    return result


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--weight", action="store_true",
                        help="sweep the weight gradient's blocks (WEIGHT_BLOCK_BYTES)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    constant = "WEIGHT_BLOCK_BYTES" if args.weight else "BLOCK_BYTES"
    if args.worker is not None:
        print(json.dumps(measure(constant, args.worker)))
        return
    rounds = 2 if args.quick else args.rounds
    print(f"machine: {common.machine()}; {constant}; {rounds} rounds, one process per size "
          "and round")
    runs = {label: [] for label in SIZES[constant]}
    for _ in range(rounds):
        for label, size in SIZES[constant].items():
            out = subprocess.run([sys.executable, "-m", "bench.blocking", "--worker", str(size)]
                                 + ["--weight"] * args.weight,
                                 capture_output=True, text=True, check=True)
            runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = {}
    for label, rows in runs.items():
        results[label] = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        print(f"{label:>10}: training step {results[label]['train_step_b128']:7.1f} ms   "
              f"JSMA-like pass {results[label]['jsma_like_pass']:7.1f} ms   (medians of rounds)")
    common.report(args, {"machine": common.machine(), "constant": constant, "rounds": rounds,
                          "results": results})


if __name__ == "__main__":
    main()
