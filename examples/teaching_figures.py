"""The figures of docs/teaching.md: why defensive distillation masks gradients, and how
an attacker gets around it.

    python examples/teaching_figures.py --models RUN/models --out FOLDER [--images 200]
    python examples/teaching_figures.py --redraw FOLDER

RUN is a folder written by ``python -m npdistill reproduce --out RUN`` (its models/ hold
baseline.npz and student_T<T>.npz). Every number is computed here, on the first
``--images`` MNIST test images, by ``npdistill.teaching``, and drawn by ``npdistill.plots``;
the figures and teaching_numbers.json go to FOLDER (docs/figures to refresh the docs').

``--redraw FOLDER`` draws again, from FOLDER/teaching_numbers.json and without the models,
the three figures drawn from numbers alone (logit_scale, zero_gradients, tgsm_vs_fgsm):
what a change to their drawing needs. The other two need the models' images.
"""
import argparse
import json
from pathlib import Path

import npdistill as nd

FROM_NUMBERS = ("logit_scale", "zero_gradients", "tgsm_vs_fgsm")


def redraw(folder):
    """The figures drawn from numbers alone, again from folder/teaching_numbers.json."""
    numbers = json.loads((Path(folder) / "teaching_numbers.json").read_text())
    for name in FROM_NUMBERS:
        try:
            getattr(nd.plots, name)(numbers[name], Path(folder) / f"{name}.png")
        except KeyError as missing:           # written before the figure drew that number
            print(f"{name}: not redrawn, the JSON predates {missing}: rerun with --models")
        else:
            print(f"{name}: redrawn in {folder}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="RUN/models of a reproduce run")
    parser.add_argument("--out", help="folder for the figures and numbers")
    parser.add_argument("--redraw", metavar="FOLDER",
                        help="redraw the figures made from numbers, from FOLDER's JSON")
    parser.add_argument("--data", default=None, help="MNIST folder (default: $NPDISTILL_DATA/mnist)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--cw-images", type=int, default=5)
    parser.add_argument("--cw-iterations", type=int, default=500)
    args = parser.parse_args()
    if args.redraw:
        return redraw(args.redraw)
    if not (args.models and args.out):
        parser.error("--models and --out are required (or --redraw FOLDER)")
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
    for name in FROM_NUMBERS:
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
