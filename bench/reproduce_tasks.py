"""The task graph of a finished reproduction, from what it saved: how many tasks, the work
they hold, its critical path, and the wall time that follows on K workers.

    python -m bench.reproduce_tasks runs/quick [--json]

Reads OUT/models/*.npz (each net's training seconds, recorded where it trained) and
OUT/measures/*.npz (each measure's seconds; a CW measure's are its batches' summed, and
each batch is taken as an equal share). The graph is the one ``reproduce`` submits on
Dask: a student after its teacher (the teacher at T = 1 is the baseline), a net's measures
after it, a CW attack's batches side by side. On K workers a greedy scheduler needs at
least max(work / K, critical path) and at most work / K + critical path (Graham's bound).
"""
import math
import re
from pathlib import Path

from bench import common
from npdistill.nn.archive import read_archive
from npdistill.nn.model import load_model


def tasks_of(out):
    """{task: (seconds, [tasks it needs])} of the reproduction saved in ``out``."""
    tasks = {}
    for path in sorted((out / "models").glob("*.npz")):
        seconds = load_model(path).metadata.get("train_seconds")
        if seconds is None:
            raise SystemExit(f"{path}: no training time recorded (saved by an older run)")
        student = re.fullmatch(r"student_T(.+)", path.stem)
        needs = []
        if student:
            teacher = f"teacher_T{student[1]}"
            needs = [teacher if (out / "models" / f"{teacher}.npz").exists() else "baseline"]
        tasks[path.stem] = (seconds, needs)
    for path in sorted((out / "measures").glob("*.npz")):
        _, header = read_archive(path)
        net, what = path.stem.split("_", 1)
        net = net if net == "baseline" else f"student_{net}"
        if what.startswith("cw_"):
            key = header["key"]
            batches = math.ceil(key["images"] / key.get("batch", key["images"]))
            for b in range(batches):
                tasks[f"{path.stem}[{b}]"] = (header["seconds"] / batches, [net])
        else:
            tasks[path.stem] = (header["seconds"], [net])
    return tasks


def critical_path(tasks):
    """(seconds, [tasks]) of the longest chain."""
    finish = {}

    def done(name):
        if name not in finish:
            seconds, needs = tasks[name]
            before = max((done(n) for n in needs), key=lambda f: f[0], default=(0.0, []))
            finish[name] = (before[0] + seconds, before[1] + [name])
        return finish[name]

    return max((done(name) for name in tasks), key=lambda f: f[0])


def main():
    parser = common.parser(__doc__)
    parser.add_argument("out", type=Path, help="a reproduction's OUT folder")
    args = parser.parse_args()
    tasks = tasks_of(args.out)
    work = sum(seconds for seconds, _ in tasks.values())
    length, chain = critical_path(tasks)
    nets = len(list((args.out / "models").glob("*.npz")))
    print(f"{args.out}: {len(tasks)} tasks ({nets} nets), work {work / 60:.1f} min, "
          f"critical path {length / 60:.1f} min: {' -> '.join(chain)}")
    bounds = {}
    for k in (1, 2, 4, 8, 16, 32):
        low, high = max(work / k, length), work / k + length
        bounds[k] = (low, high)
        print(f"  {k:>2} workers: {low / 60:6.1f} to {high / 60:6.1f} min "
              f"(speed-up {work / high:4.1f} to {work / low:4.1f}x)")
    common.report(args, {"tasks": len(tasks), "nets": nets, "work_s": work,
                          "critical_path_s": length, "critical_path": chain,
                          "bounds_s": bounds})


if __name__ == "__main__":
    main()
