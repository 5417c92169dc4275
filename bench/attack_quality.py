"""Attack quality on the undistilled MNIST net: do the attacks reach the papers' numbers?

Carlini & Wagner (2017, table IV, MNIST, average case) report 100% targeted
success with mean distortion L2 about 1.76, L-inf about 0.13 and L0 about 16
pixels; Papernot & McDaniel (2016) report FGSM (eps = 0.3) success 88.03% on
their net.

    python -m bench.attack_quality [--images 100] [--attacks fgsm cw_l2 cw_linf cw_l0]
                                   [--max-iterations 1000] [--json] [--model m.npz]

The first ``--images`` test images, random targets (never the true class, fixed
seed). FGSM runs untargeted on the whole test set. Prints one line per attack
(and the attacks' own progress on stderr); ``--json`` prints one JSON object last.
"""
import time


from bench import common

import npdistill as nd

PAPER = {"cw_l2": "L2 ~1.76", "cw_linf": "Linf ~0.13", "cw_l0": "L0 ~16 pixels",
         "fgsm": "88.03% success"}


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--attacks", nargs="+", default=["fgsm", "cw_l2", "cw_linf", "cw_l0"],
                        choices=sorted(PAPER))
    parser.add_argument("--max-iterations", type=int, default=1000)
    parser.add_argument("--model", help="a saved model (default: the cached 3-epoch net)")
    args = parser.parse_args()

    model = common.trained_mnist(path=args.model)
    _, (x_test, y_test) = common.load_mnist()
    x, y = x_test[:args.images], y_test[:args.images]
    target = nd.attacks.random_targets(y, 10, seed=0)
    print(f"# {common.machine()}; model test accuracy "
          f"{nd.metrics.accuracy(model, x_test, y_test):.2%}")
    rows = {}
    for name in args.attacks:
        start = time.perf_counter()
        if name == "fgsm":
            r = nd.attacks.fgsm(model, x_test, y_test, eps=0.3)
        else:
            attack = getattr(nd.attacks, name)
            r = attack(model, x, target=target, max_iterations=args.max_iterations)
        seconds = time.perf_counter() - start
        ok = r.success
        row = {"images": len(r.success), "success": r.success_rate, "seconds": seconds,
               **{f"mean_{d}": float(getattr(r, d)[ok].mean()) if ok.any() else None
                  for d in ("l0", "l2", "linf")}}
        rows[name] = row
        print(f"{name:<8} success {row['success']:7.2%}  L0 {row['mean_l0'] or 0:6.1f}  "
              f"L2 {row['mean_l2'] or 0:6.3f}  Linf {row['mean_linf'] or 0:6.3f}  "
              f"({row['images']} images, {seconds:.0f} s; paper: {PAPER[name]})", flush=True)
    common.report(args, {"machine": common.machine(), "max_iterations": args.max_iterations,
                          "attacks": rows})


if __name__ == "__main__":
    main()
