"""What an epoch of the papers' nets costs here, and from it the wall time of the full
reproduction (the paper's budget: 50 epochs a net, 18 nets: the baseline, 9 students and 8
teachers, the teacher at T = 1 being the baseline) serially and on K Dask workers; and the
same for the EMNIST course report's protocol (its net, 112,800 images, 50 epochs, T in
{1, 2, 5, 10, 35, 50, 100}: 14 nets, the baseline, 7 students and 6 teachers).

    python -m bench.epoch_cost [--repeats 20] [--json]

A training step at batch 128 on random data of each net's input shape (the time of a step
does not depend on the pixels), the MNIST and CIFAR-10 nets in turns (medians,
bench/common.py: timed_interleaved), the backend npdistill picks here, its default
convolution algorithm. An epoch is ceil(split / 128) steps; the training splits are the
papers' (MNIST 60,000, CIFAR-10 50,000), this environment's MNIST (22,699) and EMNIST
balanced's (112,800). The wall
time on K workers is the training work over K, bounded below by the chain a student waits
for (its teacher, then itself: 2 nets); measures are not counted (bench/reproduce_tasks.py
reads them from a finished run).
"""
import math

import numpy as np

from bench import common

import npdistill as nd

# name: (net, input shape, {split: training images}, nets the protocol trains)
NETS = {"mnist": (nd.architectures.papernot_mnist, (1, 28, 28), {"paper": 60000,
                                                                 "here": 22699}, 18),
        "cifar10": (nd.architectures.papernot_cifar10, (3, 32, 32), {"paper": 50000}, 18),
        "emnist": (nd.architectures.emnist_net, (1, 28, 28), {"report": 112800}, 14)}
EPOCHS, CHAIN = 50, 2


def step_of(net, shape):
    """A training step at batch 128 of ``net`` with its own SGD settings."""
    model = net(seed=0)
    defaults = model.metadata["training_defaults"]
    optimizer = nd.nn.SGD(defaults["lr"], defaults["momentum"])
    model.set_rng(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.random((128, *shape), dtype=np.float32)
    y = rng.integers(0, model.num_classes, 128)

    def step():
        logits = model.forward(x, training=True)
        _, dlogits = nd.cross_entropy(logits, y)
        model.backward(dlogits, input_grad=False)
        optimizer.step(model.params, model.grads, 0)
    return step


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    runners = {name: common.in_process(step_of(net, shape))
               for name, (net, shape, _, _) in NETS.items()}
    seconds = common.timed_interleaved(runners, args.repeats)
    print(f"machine: {common.machine()}; backend {nd.kernels.backend()}, BLAS threads: "
          f"{nd.kernels.blas_threads()}")
    report = {"step_s": seconds, "epochs": {}, "full_run_h": {}}
    for name, (_, _, splits, trained) in NETS.items():
        print(f"{name}: {seconds[name] * 1e3:.1f} ms a step of 128 "
              f"({128 / seconds[name]:,.0f} images/s)")
        for split, images in splits.items():
            epoch = math.ceil(images / 128) * seconds[name]
            work = trained * EPOCHS * epoch
            report["epochs"][f"{name}_{split}"] = epoch
            report["full_run_h"][f"{name}_{split}"] = {
                k: max(work / k, CHAIN * EPOCHS * epoch) / 3600 for k in (1, 2, 4, 9, trained)}
            line = ", ".join(f"{k} workers {max(work / k, CHAIN * EPOCHS * epoch) / 3600:.1f} h"
                             for k in (1, 2, 4, 9, trained))
            print(f"  an epoch of {images:,} images: {epoch:.1f} s; {trained} nets x "
                  f"{EPOCHS} epochs: {line}")
    common.report(args, {"machine": common.machine(), **report})


if __name__ == "__main__":
    main()
