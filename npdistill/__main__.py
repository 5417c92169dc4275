"""Command line: ``python -m npdistill train ...`` (also installed as ``npdistill``)."""
import argparse
import sys
import time
from pathlib import Path


from . import datasets, kernels
from .nn import architectures
from .train import train

LOADERS = {"mnist": (datasets.load_mnist, architectures.papernot_mnist),
           "fashion-mnist": (datasets.load_fashion_mnist, architectures.papernot_mnist),
           "cifar10": (datasets.load_cifar10, architectures.papernot_cifar10)}


def _train_command(args):
    if args.backend:
        kernels.use(args.backend)
    load, architecture = LOADERS[args.dataset]
    (x_train, y_train), (x_test, y_test) = load(args.data, download=args.download)
    if args.limit is not None:
        if args.limit < 1:
            raise SystemExit(f"--limit must be positive, got {args.limit}")
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    print(f"{args.dataset}: {len(x_train):,} training and {len(x_test):,} test images; "
          f"{kernels.backend()} kernels", file=sys.stderr)
    model = architecture(seed=args.seed)
    began = time.perf_counter()
    model, history = train(model, (x_train, y_train), temperature=args.temperature,
                           epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           momentum=args.momentum, seed=args.seed,
                           checkpoint_dir=args.checkpoint_dir, progress=not args.quiet)
    seconds = time.perf_counter() - began
    accuracy = float((model.predict(x_test) == y_test).mean())
    if args.out:
        model.save(args.out)
        print(f"saved {args.out}", file=sys.stderr)
    print(f"trained {args.epochs} epochs at T={args.temperature:g} in {seconds:.1f} s")
    print(f"test accuracy: {accuracy:.2%} ({len(x_test):,} images)")
    return 0


def _reproduce_command(args):
    from .reproduce import reproduce, settings_from

    if args.backend:
        kernels.use(args.backend)
    if args.defenses:
        return _reproduce_defenses(args)
    settings = settings_from(
        args.quick, temperatures=tuple(int(t) if float(t).is_integer() else t for t in args.temperatures)
        if args.temperatures else None,
        epochs=args.epochs, train_limit=args.train_limit, seed=args.seed,
        jsma_samples=args.jsma_samples, cw_images=args.cw_images,
        cw_iterations=args.cw_iterations,
        attacks=tuple(dict.fromkeys(args.attacks)) if args.attacks else None)
    began = time.perf_counter()
    results = reproduce(args.out, settings, data_path=args.data, progress=not args.quiet)
    print(Path(args.out, "results.md").read_text())
    print(f"reproduce finished in {(time.perf_counter() - began) / 60:.1f} min; "
          f"results in {args.out}")
    return 0 if results else 1


def _reproduce_defenses(args):
    from .reproduce_defenses import defense_settings_from, reproduce_defenses

    ignored = [flag for flag, value in (("--temperatures", args.temperatures),
                                        ("--jsma-samples", args.jsma_samples),
                                        ("--attacks", args.attacks)) if value]
    if ignored:
        raise ValueError(f"{', '.join(ignored)} apply to the distillation reproduction, "
                         f"not to --defenses")
    settings = defense_settings_from(args.quick, epochs=args.epochs, train_limit=args.train_limit,
                                     seed=args.seed, cw_images=args.cw_images,
                                     cw_iterations=args.cw_iterations,
        attacks=tuple(dict.fromkeys(args.attacks)) if args.attacks else None)
    began = time.perf_counter()
    reproduce_defenses(args.out, settings, data_path=args.data, progress=not args.quiet)
    print(Path(args.out, "results.md").read_text())
    print(f"reproduce --defenses finished in {(time.perf_counter() - began) / 60:.1f} min; "
          f"results in {args.out}")
    return 0


def build_parser():
    from .reproduce import ATTACK_CHOICES
    parser = argparse.ArgumentParser(prog="npdistill", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train", help="train one of the papers' nets and print its test accuracy")
    p.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    p.add_argument("--data", default=None,
                   help="folder with the data files (default: $NPDISTILL_DATA/<dataset>, "
                        "else ~/.cache/npdistill/<dataset>)")
    p.add_argument("--download", action="store_true", help="fetch missing files from the mirrors")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None, help="default: the paper's (128)")
    p.add_argument("--lr", type=float, default=None, help="default: the paper's")
    p.add_argument("--momentum", type=float, default=None, help="default: the paper's")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--checkpoint-dir", default=None, help="save every epoch; resume from here")
    p.add_argument("--backend", choices=kernels.BACKENDS, default=None)
    p.add_argument("--out", default=None, help="write the trained model here (.npz)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    p.set_defaults(run=_train_command)

    r = commands.add_parser("reproduce", help="defensive distillation on MNIST: the papers' "
                            "tables and figures (trained models in OUT/models are reused)")
    r.add_argument("--out", required=True, help="folder for results.json, results.md, figures")
    r.add_argument("--quick", action="store_true",
                   help="a few minutes: 3,000 training images, T in {1, 20, 100}, few attacks")
    r.add_argument("--defenses", action="store_true",
                   help="instead: undefended, distilled (T=50), adversarially trained and "
                        "gradient-regularized nets under FGSM / TGSM, their transfer matrix, "
                        "and the mutation-testing detector")
    r.add_argument("--temperatures", type=float, nargs="+", default=None,
                   help="default: 1 2 5 10 20 30 40 50 100")
    r.add_argument("--data", default=None, help="MNIST folder (default: $NPDISTILL_DATA/mnist)")
    r.add_argument("--epochs", type=int, default=None, help="per net (default 3; quick 2)")
    r.add_argument("--train-limit", type=int, default=None, help="first N training images")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--jsma-samples", type=int, default=None, help="x 9 targets (default 100)")
    r.add_argument("--cw-images", type=int, default=None, help="default 20 (--defenses: 100)")
    r.add_argument("--cw-iterations", type=int, default=None, help="default 1000")
    r.add_argument("--attacks", nargs="+", default=None,
                   choices=ATTACK_CHOICES,
                   help="default: all three; cw_l2, cw_linf, cw_l0: one CW norm (measures "
                        "already in OUT/measures are reused)")
    r.add_argument("--backend", choices=kernels.BACKENDS, default=None)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(run=_reproduce_command)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"npdistill: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
