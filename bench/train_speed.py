"""Whole-net speed of the paper's MNIST net: one training step (forward +
backward + SGD update) at batch 128, and inference at batch 128 and 1024, for
npdistill's numpy and cython backends and for PyTorch CPU (2 threads, the same
architecture and weights) when it is installed.

    python bench/train_speed.py [--quick] [--json] [--repeats N]

Images/s are medians over the repeats, after a warm-up.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import npdistill as nd  # noqa: E402


def npdistill_rates(x, y, repeats):
    model = nd.architectures.papernot_mnist(seed=0)
    optimizer = nd.nn.SGD(0.1, 0.5)
    model.set_rng(np.random.default_rng(0))
    xb, yb = x[:128], y[:128]

    def step():
        logits = model.forward(xb, training=True)
        _, dlogits = nd.cross_entropy(logits, yb)
        model.backward(dlogits, input_grad=False)
        optimizer.step(model.params, model.grads, 0)

    rates = {}
    step()
    seconds, _ = common.timed(step, repeats)
    rates["train_step_b128"] = 128 / seconds
    for batch in (128, 1024):
        xi = x[:batch]
        model.forward(xi)
        seconds, _ = common.timed(lambda: model.forward(xi), repeats)
        rates[f"inference_b{batch}"] = batch / seconds
    return rates


def torch_rates(torch, x, y, repeats):
    model = common.to_torch(nd.architectures.papernot_mnist(seed=0), torch).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    xb, yb = torch.from_numpy(x[:128]), torch.from_numpy(y[:128])

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()

    rates = {}
    step()
    seconds, _ = common.timed(step, repeats)
    rates["train_step_b128"] = 128 / seconds
    model.eval()
    for batch in (128, 1024):
        xi = torch.from_numpy(x[:batch])
        with torch.no_grad():
            model(xi)
            seconds, _ = common.timed(lambda: model(xi), repeats)
        rates[f"inference_b{batch}"] = batch / seconds
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    (x, y), _ = common.load_mnist()
    x, y = x[:1024], y[:1024]
    print(f"machine: {common.machine()}; median of {repeats} repeats after a warm-up")
    results = {}
    for backend in nd.kernels.available()[::-1]:
        nd.kernels.use(backend)
        results[f"npdistill_{backend}"] = npdistill_rates(x, y, repeats)
    torch = common.import_torch()
    if torch is not None:
        results["torch"] = torch_rates(torch, x, y, repeats)
    for name, rates in results.items():
        print(f"{name:<18} " + "   ".join(f"{k} {v:8,.0f} img/s" for k, v in rates.items()))
    best = results.get("npdistill_cython") or results["npdistill_numpy"]
    peer = results.get("torch", {})
    summary = {"machine": common.machine(), "repeats": repeats,
               "npdistill_img_s": best["train_step_b128"],
               "torch_img_s": peer.get("train_step_b128"),
               "ratio_vs_torch": (best["train_step_b128"] / peer["train_step_b128"]) if peer else None,
               "inference_ratio_vs_torch_best": (
                   max(best["inference_b128"], best["inference_b1024"])
                   / max(peer["inference_b128"], peer["inference_b1024"])) if peer else None,
               "results": results}
    if peer:
        print(f"training step: npdistill / PyTorch = {summary['ratio_vs_torch']:.2f}x; inference "
              f"(best batch each): {summary['inference_ratio_vs_torch_best']:.2f}x")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
