"""The Carlini-Wagner failures of a reproduction run, attacked again: which budget or rule
each one needs (docs/RESULTS.md, "what remains against the paper").

    python -m bench.cw_failures RUN [--linf-steps 5000] [--json]

RUN is a folder of ``python -m npdistill reproduce`` (its models/ and settings: the CW
images and targets are the run's, ``reproduce.cw_images`` with seed + 2000). On the
baseline, CW L2 with the reference's rule (abort early) and without it; on the hottest
student, CW L-inf with ``--linf-steps`` Adam steps per round instead of the reference's
1,000. Prints success, mean distortion and seconds for each.
"""
import time
from pathlib import Path

from bench import common
import npdistill as nd
from npdistill import reproduce


def main():
    parser = common.parser(__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--linf-steps", type=int, default=5000)
    parser.add_argument("--images", type=int, default=20, help="the run's --cw-images")
    parser.add_argument("--seed", type=int, default=0, help="the run's --seed")
    args = parser.parse_args()
    _, test = nd.datasets.load_mnist()
    settings = type("Settings", (), {"cw_images": args.images})
    x, target = reproduce.cw_images(settings, test, args.seed + 2000)
    models = sorted((args.run / "models").glob("student_T*.npz"),
                    key=lambda p: float(p.stem[len("student_T"):]))
    hottest = models[-1]
    cases = [("baseline", "l2, abort early (the reference)", nd.attacks.cw_l2, {}),
             ("baseline", "l2, no abort early", nd.attacks.cw_l2, {"abort_early": False}),
             (hottest.stem, f"linf, {args.linf_steps} steps", nd.attacks.cw_linf,
              {"max_iterations": args.linf_steps})]
    rows = []
    for name, what, attack, options in cases:
        model = nd.load_model(args.run / "models" / f"{name}.npz")
        began = time.perf_counter()
        r = attack(model, x, target=target, progress=False, **options)
        norm = "l2" if attack is nd.attacks.cw_l2 else "linf"
        distortion = getattr(r, norm)[r.success]
        rows.append({"model": name, "attack": what, "success": float(r.success.mean()),
                     "mean_distortion": float(distortion.mean()) if len(distortion) else None,
                     "seconds": time.perf_counter() - began})
        row = rows[-1]
        print(f"{name:<16} {what:<34} success {row['success']:6.1%}  mean {norm} "
              f"{row['mean_distortion']:.4f}  {row['seconds']:.0f} s", flush=True)
    common.report(args, rows)


if __name__ == "__main__":
    main()
