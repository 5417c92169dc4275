"""The figures of docs/teaching.md: why defensive distillation masks gradients, and how
an attacker gets around it.

    python examples/teaching_figures.py --models RUN/models --out FOLDER [--images 200]

RUN is a folder written by ``python -m npdistill reproduce --out RUN`` (its models/ hold
baseline.npz and student_T<T>.npz). Every number is computed here, on the first
``--images`` MNIST test images, by ``npdistill.teaching``, and drawn by ``npdistill.plots``;
the figures and teaching_numbers.json go to FOLDER (docs/figures to refresh the docs').
"""
import argparse
import json
from pathlib import Path

import npdistill as nd


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="RUN/models of a reproduce run")
    parser.add_argument("--out", required=True, help="folder for the figures and numbers")
    parser.add_argument("--data", default=None, help="MNIST folder (default: $NPDISTILL_DATA/mnist)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--cw-images", type=int, default=5)
    parser.add_argument("--cw-iterations", type=int, default=500)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)            # before any long work
    models = nd.teaching.load_models(args.models)
    _, (x_test, y_test) = nd.datasets.load_mnist(args.data)
    x, y = x_test[:args.images], y_test[:args.images]
    numbers = {"logit_scale": nd.teaching.logit_scale(models, x),
               "zero_gradients": nd.teaching.zero_gradients(models, x, y),
               "tgsm_vs_fgsm": nd.teaching.tgsm_vs_fgsm(models, x, y)}
    counters = nd.teaching.counter_attacks(models, x, y, cw_images=args.cw_images,
                                           cw_iterations=args.cw_iterations, progress=True)
    for name in ("logit_scale", "zero_gradients", "tgsm_vs_fgsm"):
        getattr(nd.plots, name)(numbers[name], out / f"{name}.png")
    nd.plots.fgsm_sign_zero(nd.teaching.fgsm_sign_zero(models, x, y), out / "fgsm_sign_zero.png")
    nd.plots.counter_attacks(counters, out / "counter_attacks.png")
    numbers["counter_attacks"] = counters["success"]
    (out / "teaching_numbers.json").write_text(json.dumps(numbers, indent=1))
    print(json.dumps(numbers, indent=1))
    print(f"wrote 5 figures and teaching_numbers.json (the numbers quoted in docs/teaching.md) "
          f"in {out}")


if __name__ == "__main__":
    main()
