"""Does the undistilled MNIST baseline close its gap to the paper with training budget?
(issue 27: 97.2% accuracy and 80% JSMA success at 3 epochs, the paper's 99.51% / 95.89%.)

    python -m bench.baseline_budget --out runs/budget [--budgets 3 10 20 50] [--json]

One baseline, the reproduction's recipe (the paper's lr 0.1, momentum 0.5, batch 128, lr
halved every 10 epochs, seed 0), trained on the whole training split to each budget in
turn: train() resumes from its per-epoch checkpoint bit for bit, so the net at 10 epochs
is the one a straight 10-epoch run gives, and so on. At every budget the reproduction's
own measures of a net (reproduce.evaluate with the full protocol's settings: 100 JSMA
samples x 9 targets, all 10,000 FGSM images at eps 0.3, 1,000 gradient images), and what
the softmax's saturation costs: JSMA on the same samples with the net in float64 and with
the logits' saliency, FGSM with the net in float64, and the share of the JSMA samples whose
top probability is exactly 1.0 in float32. Each budget's row is
saved in OUT/budget.json as it is measured; a second run reuses them.
"""
import json
import time
from pathlib import Path

import numpy as np

from bench import common

import npdistill as nd
from npdistill._files import write_text
from npdistill.reproduce import PAPER, Settings, evaluate


def saturation(model, settings, test):
    """What the softmax's saturation costs: JSMA with the logits' saliency on the samples
    ``evaluate`` attacks, and the share of them whose top probability is exactly 1.0."""
    x_test, y_test = test
    rng = np.random.default_rng(settings.seed + 1000)      # evaluate's draws, in its order
    rng.choice(len(x_test), min(settings.gradient_images, len(x_test)), replace=False)
    pick = rng.choice(len(x_test), settings.jsma_samples, replace=False)
    r = nd.attacks.jsma_all_targets(model, x_test[pick], y_test[pick], theta=1.0, gamma=0.145,
                                    on="logits", progress=False)
    wide = nd.attacks.jsma_all_targets(model.astype(np.float64), x_test[pick].astype(np.float64),
                                       y_test[pick], theta=1.0, gamma=0.145, progress=False)
    fgsm = nd.attacks.fgsm(model.astype(np.float64), x_test.astype(np.float64), y_test,
                           eps=settings.eps, progress=False)
    top = model.predict_proba(x_test[pick]).max(axis=1)
    return {"jsma_logits": r.success_rate, "jsma_float64": wide.success_rate,
            "fgsm_float64": fgsm.success_rate,
            "top_probability_exactly_1": float(np.mean(top == 1))}


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budgets", type=int, nargs="+", default=[3, 10, 20, 50])
    args = parser.parse_args()
    if sorted(args.budgets) != args.budgets or args.budgets[0] < 1:
        parser.error(f"--budgets must be increasing positive epochs, got {args.budgets}")
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "budget.json"
    rows = json.loads(saved.read_text()) if saved.exists() else {}
    (x_train, y_train), test = common.load_mnist()
    settings = Settings()
    model = None
    for epochs in args.budgets:
        if str(epochs) in rows:
            continue
        began = time.perf_counter()
        model, history = nd.train(nd.architectures.papernot_mnist(seed=settings.seed),
                                  (x_train, y_train), epochs=epochs, seed=settings.seed,
                                  validation=test, checkpoint_dir=args.out / "checkpoint")
        trained = time.perf_counter() - began
        began = time.perf_counter()
        row, _ = evaluate(model, f"{epochs} epochs", settings, test, settings.seed + 1000)
        rows[str(epochs)] = {"epochs": epochs, "train_seconds_this_call": trained,
                             "measure_seconds": time.perf_counter() - began,
                             "final_lr": history["lr"][-1], **row}
        model.save(args.out / f"baseline_{epochs}.npz")
        write_text(saved, json.dumps(rows, indent=1))
    for row in rows.values():
        if "fgsm_float64" not in row:           # rows measured before these columns existed
            row.update(saturation(nd.load_model(args.out / f"baseline_{row['epochs']}.npz"),
                                  settings, test))
            write_text(saved, json.dumps(rows, indent=1))
    print(f"machine: {common.machine()}; {len(x_train):,} training images")
    print(f"{'epochs':>6} {'accuracy':>9} {'JSMA':>7} {'JSMA L0':>8} {'JSMA f64':>8} "
          f"{'JSMA(z)':>8} {'FGSM':>7} {'FGSM f64':>8} {'|grad| median':>14} {'p_top == 1':>10}")
    for row in rows.values():
        print(f"{row['epochs']:>6} {row['accuracy']:>9.2%} {row['jsma']['success']:>7.2%} "
              f"{row['jsma']['mean_l0']:>8.1f} {row['jsma_float64']:>8.2%} "
              f"{row['jsma_logits']:>8.2%} "
              f"{row['fgsm']['success']:>7.2%} {row['fgsm_float64']:>8.2%} "
              f"{row['gradient_amplitude_median']:>14.3e} "
              f"{row['top_probability_exactly_1']:>10.0%}")
    print(f"{'paper':>6} {PAPER['baseline_accuracy']:>9.2%} "
          f"{PAPER['jsma_success']['baseline']:>7.2%} {'':>8} {'':>8} {'':>8} "
          f"{PAPER['fgsm_success']['baseline']:>7.2%}")
    common.report(args, rows)


if __name__ == "__main__":
    main()
