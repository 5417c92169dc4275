"""One progress convention: progress=True | False | None | callable, everywhere long work runs."""
import io

import numpy as np
import pytest

import npdistill as nd
from npdistill import layers, progress
from npdistill.defenses import MutationDetector
from npdistill.progress import Progress, ProgressEvent


class Clock:
    """A perf_counter that advances by ``step`` seconds per reading."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_events_carry_rate_and_eta():
    e = ProgressEvent("fgsm", 25, 100, "images", 5.0, {"success": 0.5})
    assert e.rate == 5.0 and e.eta == 15.0
    assert e.line() == "fgsm: 25/100 images, success 50.0%  5 images/s  ETA 0:00:15"
    assert ProgressEvent("fgsm", 100, 100, "images", 61.0).line().endswith("in 0:01:01")


def test_none_is_quiet_for_short_work_and_shown_once_it_runs_long(monkeypatch):
    monkeypatch.setattr(progress.time, "perf_counter", Clock(0.1))
    out = io.StringIO()
    shown = Progress(None, "jsma", 10, "images", stream=out)
    for done in range(1, 11):
        shown.update(done)
    assert out.getvalue() == ""                                  # 1 s in all: quiet
    monkeypatch.setattr(progress.time, "perf_counter", Clock(1.0))
    out = io.StringIO()
    shown = Progress(None, "jsma", 20, "images", stream=out)
    for done in range(1, 21):
        shown.update(done)
    lines = out.getvalue().splitlines()
    # plain output: at most one line every PLAIN_EVERY (5) seconds, and the last
    assert 3 <= len(lines) <= 5 and lines[-1].startswith("jsma: 20/20 images")


def test_true_prints_at_once_false_never_and_a_terminal_line_is_rewritten(monkeypatch):
    monkeypatch.setattr(progress.time, "perf_counter", Clock(0.01))
    out = io.StringIO()
    shown = Progress(True, "bim", 3, "images", stream=out)
    for done in (1, 2, 3):
        shown.update(done)
    assert out.getvalue().splitlines()[0].startswith("bim: 1/3 images")
    assert out.getvalue().splitlines()[-1].startswith("bim: 3/3 images")
    quiet = io.StringIO()
    shown = Progress(False, "bim", 3, "images", stream=quiet)
    for done in (1, 2, 3):
        shown.update(done)
    assert quiet.getvalue() == ""
    tty = Terminal()
    shown = Progress(True, "bim", 3, "images", stream=tty)
    for done in (1, 2, 3):
        shown.update(done)
    text = tty.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")


def test_progress_must_be_a_flag_none_or_a_callable():
    with pytest.raises(TypeError, match="progress must be True, False, None or a callable"):
        nd.attacks.fgsm(*_toy()[:3], progress="yes")


def _toy():
    model = nd.Sequential([layers.Conv2D(1, 2, 3), layers.ReLU(), layers.Flatten(),
                           layers.Dense(32, 3)], seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((10, 1, 6, 6)).astype(np.float32)
    return model, x, model.predict(x)


@pytest.mark.parametrize("call, stage, unit", [
    (lambda m, x, y, p: nd.attacks.fgsm(m, x, y, batch_size=4, progress=p), "fgsm", "images"),
    (lambda m, x, y, p: nd.attacks.pgd(m, x, y, steps=2, batch_size=4, progress=p), "pgd",
     "images"),
    (lambda m, x, y, p: nd.attacks.jsma(m, x, target=(y + 1) % 3, batch_size=4, progress=p),
     "jsma", "images"),
    (lambda m, x, y, p: nd.attacks.cw_l2(m, x, y, binary_search_steps=2, max_iterations=5,
                                         batch_size=4, progress=p), "cw_l2", "binary steps"),
    (lambda m, x, y, p: nd.attacks.cw_l0(m, x, target=(y + 1) % 3, max_iterations=5,
                                         batch_size=4, progress=p), "cw_l0", "images"),
    (lambda m, x, y, p: nd.jacobian(m, x, batch_size=4, progress=p), "jacobian", "images"),
    (lambda m, x, y, p: nd.metrics.adversarial_gradient_amplitude(m, x, batch_size=4,
                                                                   progress=p),
     "gradient amplitude", "images"),
    (lambda m, x, y, p: MutationDetector(m, (x, y), max_mutants=3, min_accuracy=0.01, progress=p)
     .label_change_rate(x), "mutation detector, label-change rates", "mutants"),
])
def test_a_callable_receives_every_update_and_nothing_is_printed(call, stage, unit, capsys):
    model, x, y = _toy()
    events = []
    call(model, x, y, events.append)
    assert events and all(e.stage == stage and e.unit == unit for e in events)
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].done == events[-1].total
    assert capsys.readouterr().err == ""


def test_training_reports_batches_within_an_epoch_and_every_epoch(capsys):
    model, x, y = _toy()
    events = []
    nd.train(model, (x, y), epochs=2, batch_size=4, progress=events.append)
    batches = [e for e in events if e.stage.startswith("epoch")]
    epochs = [e for e in events if e.stage == "train"]
    assert [(e.stage, e.done, e.total) for e in batches] == [
        (f"epoch {k}/2", b, 3) for k in (1, 2) for b in (1, 2, 3)]
    assert all(np.isfinite(e.figures["loss"]) for e in batches)
    assert [(e.done, e.total, e.unit) for e in epochs] == [(1, 2, "epochs"), (2, 2, "epochs")]
    assert set(epochs[-1].figures) == {"loss", "train_accuracy", "val_accuracy"}
    assert capsys.readouterr().err == ""


def test_tqdm_draws_a_bar_per_stage_and_closes_each_when_done():
    pytest.importorskip("tqdm")
    model, x, y = _toy()
    out = io.StringIO()
    bars = progress.tqdm(file=out, mininterval=0)
    nd.train(model, (x, y), epochs=2, batch_size=4, progress=bars)
    nd.attacks.fgsm(model, x, y, eps=0.1, batch_size=4, progress=bars)
    assert bars.bars == {}                                         # every bar closed
    finals = [line.split("\r")[-1] for line in out.getvalue().split("\n") if line.strip()]
    final = {line.split(":")[0]: line for line in finals}
    assert set(final) == {"epoch 1/2", "epoch 2/2", "train", "fgsm"}
    assert "3/3" in final["epoch 1/2"] and "loss=" in final["epoch 1/2"]
    assert "2/2" in final["train"] and f"{len(x)}/{len(x)}" in final["fgsm"]


def test_tqdm_begins_a_new_bar_when_a_stage_starts_again():
    pytest.importorskip("tqdm")
    bars = progress.tqdm(file=io.StringIO())
    bars(ProgressEvent("fgsm", 2, 4, "images", 1.0))
    first = bars.bars["fgsm"]
    bars(ProgressEvent("fgsm", 1, 4, "images", 0.5))               # a second call's first batch
    assert bars.bars["fgsm"] is not first and bars.bars["fgsm"].n == 1
    bars.close()
    assert bars.bars == {}


def test_tqdm_missing_says_what_to_install(monkeypatch):
    import builtins
    real = builtins.__import__

    def without_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", without_tqdm)
    with pytest.raises(ImportError, match="pip install tqdm"):
        progress.tqdm()
