"""Is the undistilled baseline's JSMA gap to the paper (80.78% vs 95.89%) the training
split's size? (issue 39: the paper trained on 60,000 images, this data has 22,699.)

    python -m bench.data_size_jsma --out runs/data_size [--sizes 5000 10000 22699] [--json]

One baseline per size, the first N training images, the reproduction's recipe (lr 0.1,
momentum 0.5, batch 128, seed 0) at **the same budget for every size**: the SGD steps of 20
epochs on all 22,699 images (3,560 steps of 128), the learning rate halved half-way, as the
20-epoch run's schedule does. Each net gets the reproduction's own measures
(reproduce.evaluate with the full protocol's settings: the same 100 JSMA samples x 9
targets, all 10,000 FGSM images, 1,000 gradient images) and baseline_budget.py's
saturation columns (JSMA on the logits, JSMA and FGSM with the net in float64, the share of
samples whose top probability is exactly 1.0). If the gap were the data's, JSMA success
would rise with N. Each size's row is saved in OUT/data_size.json as it is measured; a
second run reuses them.
"""
import json
import time
from pathlib import Path

from bench import common
from bench.baseline_budget import saturation

import npdistill as nd
from npdistill._files import write_text
from npdistill.reproduce import PAPER, Settings, evaluate

BUDGET_EPOCHS, BATCH = 20, 128           # of the whole split: the 20-epoch run's budget


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 22699])
    args = parser.parse_args()
    (x_train, y_train), test = common.load_mnist()
    if min(args.sizes) < BATCH or max(args.sizes) > len(x_train):
        parser.error(f"--sizes must lie in [{BATCH}, {len(x_train)}], got {args.sizes}")
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "data_size.json"
    rows = json.loads(saved.read_text()) if saved.exists() else {}
    steps = BUDGET_EPOCHS * -(-len(x_train) // BATCH)
    settings = Settings()
    for size in args.sizes:
        if str(size) in rows:
            continue
        per_epoch = -(-size // BATCH)
        epochs = round(steps / per_epoch)
        began = time.perf_counter()
        model, history = nd.train(nd.architectures.papernot_mnist(seed=settings.seed),
                                  (x_train[:size], y_train[:size]), epochs=epochs,
                                  batch_size=BATCH, decay_every=max(1, epochs // 2),
                                  decay_factor=0.5, seed=settings.seed)
        trained = time.perf_counter() - began
        began = time.perf_counter()
        row, _ = evaluate(model, f"{size:,} images", settings, test, settings.seed + 1000)
        row.update(saturation(model, settings, test))
        rows[str(size)] = {"images": size, "epochs": epochs, "steps": epochs * per_epoch,
                           "train_seconds": trained, "final_lr": history["lr"][-1],
                           "measure_seconds": time.perf_counter() - began, **row}
        model.save(args.out / f"baseline_{size}.npz")
        write_text(saved, json.dumps(rows, indent=1))
    print(f"machine: {common.machine()}; budget {steps:,} steps of {BATCH}")
    print(f"{'images':>7} {'epochs':>6} {'steps':>6} {'accuracy':>9} {'JSMA':>7} {'JSMA f64':>8} "
          f"{'JSMA(z)':>8} {'FGSM':>7} {'FGSM f64':>8} {'|grad| median':>14} {'p_top == 1':>10}")
    for row in rows.values():
        print(f"{row['images']:>7} {row['epochs']:>6} {row['steps']:>6} {row['accuracy']:>9.2%} "
              f"{row['jsma']['success']:>7.2%} {row['jsma_float64']:>8.2%} "
              f"{row['jsma_logits']:>8.2%} {row['fgsm']['success']:>7.2%} "
              f"{row['fgsm_float64']:>8.2%} {row['gradient_amplitude_median']:>14.3e} "
              f"{row['top_probability_exactly_1']:>10.0%}")
    print(f"{'paper':>7} {'':>6} {'':>6} {PAPER['baseline_accuracy']:>9.2%} "
          f"{PAPER['jsma_success']['baseline']:>7.2%}")
    common.report(args, rows)


if __name__ == "__main__":
    main()
