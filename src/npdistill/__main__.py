"""npdistill's command line: train the papers' nets, reproduce their tables and figures,
evaluate a model's robust accuracy.

Run as ``npdistill COMMAND`` or ``python -m npdistill COMMAND``; ``COMMAND --help`` says more.
Exit status: 0 success, 2 a usage error (a bad flag, an output path that cannot be
written, no data where it was looked for), 1 a run that failed, 130 interrupted.
"""
import argparse
import contextlib
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import datasets, kernels
from ._checks import check_output_dir, check_output_file
from ._files import remove_stale_temporaries, removed_note, write_text
from ._version import __version__
from .benchmarks import BENCHMARKS, REPRODUCIBLE, reproduction
from .distributed import WorkLost, cluster
from .train import train

BACKEND_WORDS = {"numpy": "the NumPy reference, not compiled",
                 "cython": "compiled Cython kernels", "cuda": "Numba CUDA kernels"}


class UsageError(Exception):
    """The command line asks for something that cannot be done: exit status 2."""


def _plural(n, word):
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _choose_backend(args):
    """--backend, else NPDISTILL_BACKEND, else the fastest here; say which, before any work."""
    try:
        if args.backend:
            kernels.use(args.backend)
        name = kernels.backend()
    except ValueError as exc:
        raise UsageError(f"{exc}" + ("" if args.backend else "; --backend overrides it")) \
            from None
    print(f"backend: {name} ({BACKEND_WORDS[name]})", file=sys.stderr)


def _check_outputs(*paths):
    """Check every output path, given as (check, value, flag), before any work starts."""
    for check, value, flag in paths:
        if value is not None:
            try:
                check(value, flag)
            except (ValueError, TypeError) as exc:
                raise UsageError(str(exc)) from None


def _data_not_found(exc):
    """DataNotFound in the command line's words: the three ways to give data."""
    files = ", ".join(exc.missing)
    where = " nor in ".join(map(str, exc.folders))
    return (f"no {exc.name} data in {where} (missing {files}). Give it one of three ways:\n"
            f"  --data FOLDER        a folder holding the {exc.name} files\n"
            f"  NPDISTILL_DATA=ROOT  a folder holding {exc.folder.name}/ (for every command)\n"
            f"  --download           fetch it into {exc.folder}, checksums verified")


def _train_command(args):
    _check_outputs((check_output_file, args.out, "--out"),
                   (check_output_dir, args.checkpoint_dir, "--checkpoint-dir"))
    _choose_backend(args)
    chosen = BENCHMARKS[args.dataset]
    (x_train, y_train), (x_test, y_test) = chosen.load(args.data, download=args.download)
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    print(f"{args.dataset}: {len(x_train):,} training and {len(x_test):,} test images",
          file=sys.stderr)
    model = chosen.net(seed=args.seed)
    if args.out:
        removed = remove_stale_temporaries(Path(args.out).parent)     # a killed save's
        if removed and not args.quiet:
            print(removed_note(removed, Path(args.out).parent), file=sys.stderr)
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
    # every epoch's rate, a resumed run's earlier epochs included (the checkpoint keeps them)
    rate = len(history["seconds"]) * len(x_train) / sum(history["seconds"])
    print(f"trained {_plural(args.epochs, 'epoch')} at T={args.temperature:g} in "
          f"{seconds:.1f} s ({rate:,.0f} samples/s, {kernels.backend()} backend)")
    print(f"test accuracy: {accuracy:.2%} ({len(x_test):,} images)")
    return 0


@contextlib.contextmanager
def _dask_client(args):
    """distributed.cluster for --workers or --scheduler; None for a serial run."""
    try:
        with cluster(args.workers, args.scheduler, backend=kernels.backend(),
                     say=lambda line: print(line, file=sys.stderr)) as client:
            yield client
    except ImportError as exc:
        raise UsageError(str(exc)) from None


def _reproduce_command(args):
    _check_outputs((check_output_dir, args.out, "--out"))
    run, settings, what = (_defenses_run if args.defenses else _distillation_run)(args)
    _choose_backend(args)
    began = time.perf_counter()
    with _dask_client(args) as client:
        try:
            run(args.out, settings, data_path=args.data, progress=not args.quiet,
                download=args.download, client=client, heal=not args.no_recompute)
        except WorkLost as exc:
            raise WorkLost(f"{exc}: stopped; run the same command again to resume from "
                           f"what is saved in {args.out}") from None
    print((args.out / "results.md").read_text())
    print(f"{what} finished in {(time.perf_counter() - began) / 60:.1f} min; "
          f"results in {args.out}")
    return 0


def _evaluate_command(args):
    _check_outputs((check_output_dir, args.out, "--out"))
    if (args.model is None) == (args.arch is None) or (args.arch is None) != \
            (args.state_dict is None):
        raise UsageError("give MODEL.npz, or --arch NAME with --state-dict FILE (not both)")
    _choose_backend(args)
    from .evaluation import evaluate
    from .nn.model import load_model
    model = load_model(args.model) if args.model else _from_state_dict(args.arch,
                                                                        args.state_dict)
    chosen = BENCHMARKS[args.dataset]
    _, (x, y) = chosen.load(args.data, download=args.download)
    x, y = x[:args.images], y[:args.images]
    x = x.astype(model.dtype, copy=False)
    settings = {"pgd": {"steps": args.steps}, "apgd-ce": {"steps": args.steps},
                "apgd-dlr": {"steps": args.steps}, "square": {"queries": args.queries}}
    attacks = [(name, {k: v for k, v in settings.get(name, {}).items() if v is not None})
               for name in args.attacks]               # evaluate adds each attack's defaults
    print(f"{args.dataset}: {_plural(len(x), 'test image')}; {', '.join(args.attacks)} at "
          f"eps {' '.join(f'{e:g}' for e in args.eps)} ({args.norm})", file=sys.stderr)
    with _dask_client(args) as client:
        ev = evaluate(model, x, y, attacks=attacks, eps=args.eps, norm=args.norm,
                      seed=args.seed, client=client, cache=args.out / "parts",
                      progress=not args.quiet)
    ev.to_json(args.out / "evaluation.json")
    command = " ".join(["npdistill", *sys.argv[1:]]) if sys.argv[1:2] == ["evaluate"] \
        else "npdistill evaluate"
    write_text(args.out / "evaluation.md", f"# Robust accuracy\n\n`{command}`\n\n"
               f"{ev.table()}\n\nSeconds per attack: "
               + ", ".join(f"{a} {t:.0f}" for a, t in zip(ev.attacks, ev.seconds)) + "\n",
               "evaluation table")
    ev.plot(args.out / "robust_accuracy.png")
    print(ev.table())
    print(f"written: {args.out / 'evaluation.json'}, evaluation.md, robust_accuracy.png")
    return 0


def _from_state_dict(arch, path):
    """The architecture ``arch`` holding the state_dict at ``path`` (.pt/.pth or .npz)."""
    from . import interop
    from .nn import architectures
    build = getattr(architectures, arch, None)
    if arch.startswith("_") or not callable(build):
        names = sorted(n for n in dir(architectures) if not n.startswith("_")
                       and callable(getattr(architectures, n)))
        raise UsageError(f"--arch: no architecture {arch!r}; expected one of {names}")
    if Path(path).suffix == ".npz":
        with np.load(path) as archive:
            mapping = dict(archive)
    else:
        try:
            import torch
        except ImportError:
            raise UsageError("--state-dict: reading a .pt file needs PyTorch "
                             "(pip install 'npdistill[torch]'), or save it as .npz") from None
        mapping = torch.load(path, map_location="cpu", weights_only=True)
    return interop.load_state_dict(build(), mapping)


def _distillation_run(args):
    """reproduce: (the function, its settings from the flags, its name): the protocol of
    the data set's study (the registry's, benchmarks.py)."""
    dataset = args.dataset or "mnist"
    protocol = reproduction(dataset)
    unknown = [a for a in args.attacks or () if a not in protocol.ATTACK_CHOICES]
    if unknown:
        raise UsageError(f"--attacks: {', '.join(unknown)} not measured on {dataset} "
                         f"(choose among {' '.join(protocol.ATTACK_CHOICES)})")
    temperatures = args.temperatures and tuple(int(t) if t.is_integer() else t
                                               for t in args.temperatures)
    settings = protocol.settings_from(
        args.quick, dataset=dataset, temperatures=temperatures, epochs=args.epochs,
        batch_size=args.batch_size, train_limit=args.train_limit, seed=args.seed,
        jsma_samples=args.jsma_samples, cw_images=args.cw_images,
        cw_iterations=args.cw_iterations, cw_batch=args.cw_batch,
        attacks=args.attacks and tuple(dict.fromkeys(args.attacks)), seeds=args.seeds)
    return protocol.reproduce, settings, f"reproduce --dataset {dataset}"


def _defenses_run(args):
    """reproduce --defenses: (the function, its settings from the flags, its name)."""
    from .reproduce_defenses import defense_settings_from, reproduce_defenses

    ignored = [flag for flag, value in (("--temperatures", args.temperatures),
                                        ("--jsma-samples", args.jsma_samples),
                                        ("--cw-batch", args.cw_batch),
                                        ("--batch-size", args.batch_size),
                                        ("--seeds", args.seeds),
                                        ("--dataset", args.dataset not in (None, "mnist")),
                                        ("--attacks", args.attacks)) if value]
    if ignored:
        raise UsageError(f"{', '.join(ignored)} apply to the distillation reproduction, "
                         f"not to --defenses")
    settings = defense_settings_from(args.quick, epochs=args.epochs, train_limit=args.train_limit,
                                     seed=args.seed, cw_images=args.cw_images,
                                     cw_iterations=args.cw_iterations)
    return reproduce_defenses, settings, "reproduce --defenses"


# -- the parser ------------------------------------------------------------------------
def _number(kind, low, *, inclusive=False):
    """An argparse type: a ``kind`` greater than ``low`` (or equal, with ``inclusive``)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                             f", got {text!r}") from None
        if not math.isfinite(value) or not (value >= low if inclusive else value > low):
            raise argparse.ArgumentTypeError(f"expected a finite number "
                                             f"{'>=' if inclusive else '>'} {low}, got {text}")
        return value
    return parse


positive_int, positive_float = _number(int, 0), _number(float, 0.0)
count = _number(int, 0, inclusive=True)


def fraction(text):
    value = _number(float, 0.0, inclusive=True)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows a flag's default where it has one (not None, not a bare switch's False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False \
                or action.default is argparse.SUPPRESS \
                or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _common_flags(p, dataset_words):
    p.add_argument("--data", default=None, metavar="FOLDER",
                   help=f"folder holding the {dataset_words} files, or a data root holding "
                        f"its sub-folder (default: $NPDISTILL_DATA, then ~/.cache/npdistill)")
    p.add_argument("--download", action="store_true",
                   help="fetch missing data files into that folder (checksums verified)")
    p.add_argument("--backend", choices=kernels.BACKENDS, default=None,
                   help="the kernels to run on (default: $NPDISTILL_BACKEND, else the fastest "
                        "here: cuda with a GPU, else cython)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def build_parser():
    from .evaluation import ATTACKS, DEFAULT_ATTACKS
    from .reproduce import ATTACK_CHOICES
    from .reproduce_emnist import ATTACK_CHOICES as EMNIST_ATTACKS

    parser = argparse.ArgumentParser(prog="npdistill", description=__doc__,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"npdistill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="train, reproduce or evaluate (COMMAND --help for "
                                          "its flags)")
    p = commands.add_parser("train", formatter_class=_HelpFormatter,
                            help="train one of the papers' nets and print its test accuracy",
                            description="Train one of the papers' nets (Papernot et al., 2016) "
                                        "and print its test accuracy.")
    p.add_argument("--dataset", choices=sorted(BENCHMARKS), default="mnist", help="the data set")
    _common_flags(p, "data set's")
    p.add_argument("--temperature", type=positive_float, default=1.0,
                   help="softmax temperature of the training loss")
    p.add_argument("--epochs", type=positive_int, default=2, help="passes over the training set")
    p.add_argument("--seed", type=count, default=0,
                   help="seeds the weights, the batch order and dropout")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="default: the paper's (128)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: the paper's, 0.1 for MNIST)")
    p.add_argument("--momentum", type=fraction, default=None,
                   help="SGD momentum (default: the paper's, 0.5 for MNIST)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="train on the first N images only (default: all)")
    p.add_argument("--checkpoint-dir", default=None, metavar="FOLDER",
                   help="save a checkpoint after every epoch, and resume from it (default: none)")
    p.add_argument("--out", default=None, metavar="FILE.npz",
                   help="write the trained model here (default: not saved)")
    p.set_defaults(run=_train_command)

    r = commands.add_parser("reproduce", formatter_class=_HelpFormatter,
                            help="defensive distillation: the papers' tables and figures",
                            description="Defensive distillation on MNIST, CIFAR-10 or EMNIST, end "
                                        "to end: the papers' tables and figures. Trained models "
                                        "and measures in OUT are reused, so an interrupted run "
                                        "resumes.")
    r.add_argument("--out", required=True, type=Path, metavar="FOLDER",
                   help="folder for results.json, results.md, the figures and the models")
    r.add_argument("--quick", action="store_true",
                   help="under 5 minutes on 2 cores: 5 nets on the whole split, 2 epochs each, "
                        "T in {20, 100}, JSMA, FGSM and CW L2 on a few images, the "
                        "papers' claims checked (CIFAR-10: 3,000 images; EMNIST: 20,000, "
                        "T in {10, 100}, I-FGSM on 2,000 test images, each CW attack on 5)")
    r.add_argument("--defenses", action="store_true",
                   help="instead: undefended, distilled (T=50), adversarially trained and "
                        "gradient-regularized nets under FGSM / TGSM, their transfer matrix, "
                        "and the mutation-testing detector")
    _common_flags(r, "MNIST, CIFAR-10 or EMNIST")
    r.add_argument("--dataset", choices=REPRODUCIBLE, default=None,
                   help="mnist (default), cifar10 (the CIFAR-10 net; FGSM eps 8/255; "
                        "--data: the folder holding cifar-10-batches-bin's files) or emnist "
                        "(the balanced split and the course report's protocol: its net, "
                        "I-FGSM at class 46, CW against every distilled net)")
    r.add_argument("--temperatures", type=positive_float, nargs="+", default=None, metavar="T",
                   help="default: 1 2 5 10 20 30 40 50 100 (--quick: 20 100); EMNIST: 1 2 5 "
                        "10 35 50 100 (--quick: 10 100)")
    r.add_argument("--epochs", type=positive_int, default=None,
                   help="per net (default 3, EMNIST 50; --quick 2)")
    r.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="SGD batch per net (default: the net's, the papers' 128; --quick 64)")
    r.add_argument("--train-limit", type=positive_int, default=None, metavar="N",
                   help="first N training images (default: all; CIFAR-10 --quick 3,000)")
    r.add_argument("--seed", type=count, default=None, help="default 0")
    r.add_argument("--seeds", type=positive_int, default=None, metavar="K",
                   help="train every net with K seeds (SEED .. SEED+K-1, each in OUT/seed<S>) "
                        "and report each cell as the mean and range over them (default 1)")
    r.add_argument("--jsma-samples", type=positive_int, default=None, metavar="N",
                   help="N images x the 9 other classes (EMNIST: 46) as targets (default 100, "
                        "EMNIST 20; --quick 10, EMNIST 2)")
    r.add_argument("--cw-images", type=positive_int, default=None, metavar="N",
                   help="default 20 (--quick 20, CIFAR-10 3; --defenses 100, with --quick 8)")
    r.add_argument("--cw-iterations", type=positive_int, default=None, metavar="N",
                   help="Adam steps per binary-search step (default 1000; CIFAR-10 --quick "
                        "200, --defenses --quick 100)")
    r.add_argument("--cw-batch", type=positive_int, default=None, metavar="N",
                   help="CW attacks its images N at a time (default 10): the batches one "
                        "after another, or side by side on Dask workers, the same answer")
    r.add_argument("--attacks", nargs="+", default=None,
                   choices=tuple(dict.fromkeys(ATTACK_CHOICES + EMNIST_ATTACKS)),
                   help="default: jsma fgsm cw (--quick: jsma fgsm cw_l2; EMNIST: jsma ifgsm "
                        "cw); cw_l2, cw_linf, cw_l0: one CW norm (measures already in "
                        "OUT/measures are reused)")
    r.add_argument("--no-recompute", action="store_true",
                   help="stop at a saved net or measure in OUT that fails its checks "
                        "(default: move it aside to NAME.damaged, say so, compute it again)")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="run the nets and measures as a Dask task graph on N local worker "
                            "processes (needs: pip install \"npdistill[distributed]\")")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run them on a running Dask cluster (dask scheduler / dask worker), "
                            "e.g. tcp://10.0.0.1:8786")
    r.set_defaults(run=_reproduce_command)

    e = commands.add_parser("evaluate", formatter_class=_HelpFormatter,
                            help="robust accuracy of a model per eps, worst case over attacks",
                            description="Robust accuracy of a model on the test split per "
                                        "budget eps: each attack's accuracy and the worst case "
                                        "over them (npdistill.evaluate). Each attack's record "
                                        "is saved in OUT/parts and reused, so an interrupted "
                                        "run resumes.")
    e.add_argument("model", nargs="?", default=None, metavar="MODEL.npz",
                   help="a model file (npdistill's); or give --arch and --state-dict")
    e.add_argument("--arch", default=None, metavar="NAME",
                   help="an architecture of npdistill.architectures (e.g. papernot_mnist) ...")
    e.add_argument("--state-dict", default=None, metavar="FILE",
                   help="... and the PyTorch state_dict to load into it (.pt, or .npz)")
    e.add_argument("--out", required=True, type=Path, metavar="FOLDER",
                   help="folder for evaluation.json, evaluation.md, robust_accuracy.png")
    e.add_argument("--dataset", choices=sorted(BENCHMARKS), default="mnist",
                   help="the test split to evaluate on")
    _common_flags(e, "data set's")
    e.add_argument("--attacks", nargs="+", default=list(DEFAULT_ATTACKS),
                   choices=sorted(ATTACKS), metavar="NAME",
                   help=f"from {', '.join(sorted(ATTACKS))}")
    e.add_argument("--eps", type=_number(float, 0.0, inclusive=True), nargs="+",
                   default=[0.0, 0.1, 0.2, 0.3], help="the budgets, increasing")
    e.add_argument("--norm", choices=["inf", "2"], default="inf", help="of the budgets")
    e.add_argument("--images", type=positive_int, default=1000, metavar="N",
                   help="the first N test images")
    e.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="PGD's and APGD's iterations (default: 40 and 100)")
    e.add_argument("--queries", type=positive_int, default=None, metavar="N",
                   help="Square's queries per image (default 5000)")
    e.add_argument("--seed", type=count, default=0, help="the attacks' random starts")
    where = e.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="attack on N local Dask worker processes")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="attack on a running Dask cluster")
    e.set_defaults(run=_evaluate_command)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)      # exits 2 on a bad flag
    try:
        return args.run(args)
    except UsageError as exc:
        status, message = 2, str(exc)
    except datasets.DataNotFound as exc:
        status, message = 2, _data_not_found(exc)
    except (ValueError, TypeError, OSError, FloatingPointError, WorkLost) as exc:
        status, message = 1, str(exc)
    except KeyboardInterrupt:              # 128 + SIGINT, the shells' convention
        status, message = 130, "interrupted (train --checkpoint-dir and reproduce resume)"
    print(f"npdistill: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
