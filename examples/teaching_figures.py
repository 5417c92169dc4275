"""The figures of docs/teaching.md: why defensive distillation masks gradients,
and how an attacker gets around it.

    python examples/teaching_figures.py --models RUN/models --out docs/figures [--images 200]

RUN is a folder written by ``python -m npdistill reproduce --out RUN`` (its
models/ hold baseline.npz and student_T<T>.npz). Every number in the figures
is computed here, on the first ``--images`` MNIST test images.
"""
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import npdistill as nd  # noqa: E402


def load_models(folder):
    folder = Path(folder)
    models = {"baseline": nd.load_model(folder / "baseline.npz")}
    students = sorted(folder.glob("student_T*.npz"), key=lambda p: float(p.stem[len("student_T"):]))
    if not students:
        raise SystemExit(f"no student_T*.npz in {folder}: run `python -m npdistill reproduce` first")
    for path in students:
        models[path.stem[len("student_T"):]] = nd.load_model(path)
    return models


def label(name):
    return "no distillation" if name == "baseline" else f"T = {name}"


def logit_scale(models, x, path):
    """Training at T and deploying at 1 scales the logits by about T and saturates the softmax."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(models)
    gaps, tops = [], []
    for name in names:
        z = np.sort(models[name].logits(x), axis=1)
        gaps.append(z[:, -1] - z[:, -2])
        tops.append(1 - models[name].predict_proba(x).max(axis=1))
    a.boxplot(gaps, showfliers=False)
    a.set_yscale("log")
    a.set_xticks(range(1, len(names) + 1), [label(n) for n in names], rotation=30, fontsize=8)
    a.set_ylabel("gap between the two largest logits")
    a.set_title("Logits grow with the training temperature")
    exact = [100 * float((t == 0).mean()) for t in tops]
    b.bar(range(len(names)), exact, color="C3")
    b.set_xticks(range(len(names)), [label(n) for n in names], rotation=30, fontsize=8)
    b.set_ylabel("% of images with max softmax = 1.0 exactly")
    b.set_ylim(0, 110)                         # room for the 100% labels under the title
    b.set_title("Deployed at T = 1, the float32 softmax saturates")
    for i, v in enumerate(exact):
        b.text(i, v + 1, f"{v:.0f}%", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {n: {"median_logit_gap": float(np.median(g)), "saturated_share": e / 100}
            for n, g, e in zip(names, gaps, exact)}


def zero_gradients(models, x, y, path):
    """How many input gradients are exactly 0 in float32, and how small they are in float64."""
    names = list(models)
    masking = [nd.metrics.gradient_masking(models[n], x, y) for n in names]
    amplitude = [np.median(nd.metrics.adversarial_gradient_amplitude(models[n], x)) for n in names]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.27
    for k, (key, text) in enumerate((("fgsm", "FGSM loss gradient"), ("jsma", "JSMA dF/dX"),
                                     ("cw", "CW logit margin"))):
        a.bar(np.arange(len(names)) + (k - 1) * width,
              [100 * m[key]["zero_fraction"] for m in masking], width, label=text)
    a.set_xticks(range(len(names)), [label(n) for n in names], rotation=30, fontsize=8)
    a.set_ylabel("% of gradient components exactly 0 (float32)")
    a.set_title("Underflow: the softmax gradients vanish, the logits' do not")
    a.legend(fontsize=8)
    b.bar(range(len(names)), amplitude, color="C4")
    b.set_yscale("log")
    b.set_xticks(range(len(names)), [label(n) for n in names], rotation=30, fontsize=8)
    b.set_ylabel("median mean |dF_c/dX| (float64)")
    b.axhline(np.finfo(np.float32).tiny, color="k", ls=":", lw=1)
    b.text(len(names) - 0.5, np.finfo(np.float32).tiny * 1e4, "smallest normal float32",
           fontsize=8, ha="right", bbox=dict(facecolor="white", edgecolor="none", pad=1))
    b.set_title("In float64 the gradient is there, but tiny")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {n: {**{f"{k}_zero_fraction": m[k]["zero_fraction"] for k in m},
                "median_amplitude_float64": float(a)}
            for n, m, a in zip(names, masking, amplitude)}


def fgsm_sign_zero(models, x, y, path):
    """sign(0) = 0: FGSM leaves the image of a distilled net untouched."""
    hottest = list(models)[-1]
    model = models[hottest]
    masking = nd.attacks.loss_gradient(model, x, y)
    still = np.flatnonzero(~masking.reshape(len(x), -1).any(axis=1))
    i = int(still[0]) if still.size else 0
    rows = [("baseline", models["baseline"]), (hottest, model)]
    fig, axes = plt.subplots(2, 3, figsize=(7.5, 5.2))
    for r, (name, m) in enumerate(rows):
        g = nd.attacks.loss_gradient(m, x[i:i + 1], y[i:i + 1])[0, 0]
        adv = nd.attacks.fgsm(m, x[i:i + 1], y[i:i + 1], eps=0.3)
        limit = np.abs(g).max() or 1.0
        axes[r, 0].imshow(x[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(f"{label(name)}: clean, says {m.predict(x[i:i + 1])[0]}", fontsize=8)
        axes[r, 1].imshow(g, cmap="RdBu", vmin=-limit, vmax=limit)
        axes[r, 1].set_title(f"dLoss/dx: {np.count_nonzero(g)} non-zero", fontsize=8)
        axes[r, 2].imshow(adv.x_adv[0, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, 2].set_title(f"FGSM eps=0.3: says {m.predict(adv.x_adv)[0]}, "
                             f"{adv.l0[0]} pixels moved", fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
    fig.suptitle("FGSM steps along sign(gradient); a gradient of exact zeros moves nothing",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def counter_attacks(models, x, y, path, cw_images, cw_iterations):
    """The attacker's counters: divide the logits by T again, attack the logits, use CW."""
    names = list(models)
    target = nd.attacks.random_targets(y, 10, seed=0)
    rows = {"FGSM at T = 1": [], "FGSM, logits / T": [], "JSMA on the softmax": [],
            "JSMA on the logits": [], "CW L2 (logits)": []}
    n = min(len(x), 30)
    for name in names:
        m = models[name]
        T = m.metadata.get("training_temperature", 1.0)
        rows["FGSM at T = 1"].append(nd.attacks.fgsm(m, x, y, eps=0.3).success_rate)
        rows["FGSM, logits / T"].append(nd.attacks.fgsm(m, x, y, eps=0.3, T=T).success_rate)
        rows["JSMA on the softmax"].append(
            nd.attacks.jsma(m, x[:n], target=target[:n]).success_rate)
        rows["JSMA on the logits"].append(
            nd.attacks.jsma(m, x[:n], target=target[:n], on="logits").success_rate)
        rows["CW L2 (logits)"].append(nd.attacks.cw_l2(
            m, x[:cw_images], target=target[:cw_images], max_iterations=cw_iterations,
            binary_search_steps=5, c=0.1, progress=False).success_rate)
        print(f"counter attacks: {label(name)} done", file=sys.stderr, flush=True)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / len(rows)
    for k, (text, values) in enumerate(rows.items()):
        ax.bar(np.arange(len(names)) + (k - (len(rows) - 1) / 2) * width,
               [100 * v for v in values], width, label=text)
    ax.set_xticks(range(len(names)), [label(n) for n in names])
    ax.set_ylabel("attack success (%)")
    ax.set_ylim(0, 125)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title(f"Gradient masking is not robustness (JSMA: {n} images, CW: {cw_images})")
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return rows


def tgsm_vs_fgsm(models, x, y, path):
    """Ross & Doshi-Velez (2018): on a distilled net the untargeted loss gradient
    vanishes, while the targeted one (towards a class the net gives probability ~0) explodes."""
    names = list(models)
    target = (y + 1) % 10
    fgsm_norm, tgsm_norm = [], []
    for name in names:
        m = models[name]
        for labels, store in ((y, fgsm_norm), (target, tgsm_norm)):
            g = nd.attacks.loss_gradient(m, x, labels).reshape(len(x), -1)
            store.append(np.linalg.norm(g.astype(np.float64), axis=1))
    fig, ax = plt.subplots(figsize=(8, 4))
    positions = np.arange(len(names))
    for values, shift, color, text in ((fgsm_norm, -0.18, "C0", "FGSM: loss of the true class"),
                                       (tgsm_norm, 0.18, "C3", "TGSM: loss of a target class")):
        medians = [np.median(v) for v in values]
        ax.bar(positions + shift, np.maximum(medians, 1e-45), 0.36, color=color, label=text)
    ax.set_yscale("log")
    ax.set_xticks(positions, [label(n) for n in names], rotation=30, fontsize=8)
    ax.set_ylim(top=1e12)                      # room for the legend above the bars
    ax.set_ylabel("median ||dLoss/dx||_2 (0 drawn at 1e-45)")
    ax.set_title("Distillation: FGSM gradients vanish, TGSM gradients explode")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {n: {"median_fgsm_gradient_norm": float(np.median(f)),
                "median_tgsm_gradient_norm": float(np.median(t))}
            for n, f, t in zip(names, fgsm_norm, tgsm_norm)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="RUN/models of a reproduce run")
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--data", default=None, help="MNIST folder (default: $NPDISTILL_DATA/mnist)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--cw-images", type=int, default=5)
    parser.add_argument("--cw-iterations", type=int, default=500)
    args = parser.parse_args()
    models = load_models(args.models)
    _, (x_test, y_test) = nd.datasets.load_mnist(args.data)
    x, y = x_test[:args.images], y_test[:args.images]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    numbers = {"logit_scale": logit_scale(models, x, out / "logit_scale.png"),
               "zero_gradients": zero_gradients(models, x, y, out / "zero_gradients.png")}
    fgsm_sign_zero(models, x, y, out / "fgsm_sign_zero.png")
    numbers["tgsm_vs_fgsm"] = tgsm_vs_fgsm(models, x, y, out / "tgsm_vs_fgsm.png")
    counters = counter_attacks(models, x, y, out / "counter_attacks.png", args.cw_images,
                               args.cw_iterations)
    numbers["counter_attacks"] = {n: {attack: rates[i] for attack, rates in counters.items()}
                                  for i, n in enumerate(models)}
    (out / "teaching_numbers.json").write_text(json.dumps(numbers, indent=1))
    print(json.dumps(numbers, indent=1))
    print(f"wrote 5 figures and teaching_numbers.json (the numbers quoted in docs/teaching.md) "
          f"in {out}")


if __name__ == "__main__":
    main()
