"""One progress convention for long work: ``progress=True | False | None | callable``.

- None (the default of the attacks, the Jacobian, the metrics and the detector): quiet
  until the work has run MIN_SECONDS, then shown — short calls print nothing.
- True: shown from the start. False: never.
- A callable: called with a ``ProgressEvent`` at every update and nothing is printed, so
  a user can drive a notebook widget or a log. ``progress=npdistill.progress.tqdm()`` is
  one: a tqdm bar per stage (tqdm is optional).

Shown means one line per stage on stderr, "stage: done/total unit, figures  rate  ETA":
rewritten in place on a terminal, plain lines otherwise (at most one every
PLAIN_EVERY seconds, and the last).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO, TypeAlias, Union

MIN_SECONDS = 2.0
PLAIN_EVERY = 5.0


@dataclass(frozen=True)
class ProgressEvent:
    """Where a piece of work stands: ``done`` of ``total`` ``unit`` of ``stage`` after
    ``elapsed`` seconds, with the stage's own running figures (success so far, loss ...)."""
    stage: str
    done: int
    total: int
    unit: str
    elapsed: float
    figures: dict = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        """Units per second so far (None before any time has passed)."""
        return self.done / self.elapsed if self.elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before the first unit)."""
        return (self.total - self.done) / self.rate if self.done and self.rate else None

    def line(self) -> str:
        figures = "".join(f", {key} {_shown(key, value)}" for key, value in self.figures.items())
        timing = f"in {format_seconds(self.elapsed)}" if self.done >= self.total else \
            f"ETA {format_seconds(self.eta)}" if self.eta is not None else ""
        rate = f"  {self.rate:,.3g} {self.unit}/s" if self.rate else ""
        return f"{self.stage}: {self.done:,}/{self.total:,} {self.unit}{figures}{rate}  {timing}"


# what every long call takes as progress= (npdistill.typing re-exports it)
ProgressArg: TypeAlias = Union[bool, None, Callable[[ProgressEvent], object]]


def _shown(key, value):
    if isinstance(value, float):
        return f"{value:.1%}" if key in ("success", "accuracy") else f"{value:.4g}"
    return str(value)


def format_seconds(seconds: float | None) -> str:
    """h:mm:ss ("-" for unknown)."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def check_progress(progress: object) -> ProgressArg:
    """progress must be True, False, None or a callable."""
    if progress is None or isinstance(progress, bool) or callable(progress):
        return progress
    raise TypeError(f"progress must be True, False, None or a callable taking a "
                    f"ProgressEvent, got {type(progress).__name__}")


class Progress:
    """The progress of one stage: ``update(done, **figures)`` as units complete."""

    def __init__(self, progress: ProgressArg, stage: str, total: int, unit: str, *,
                 stream: TextIO | None = None, final_line: bool = True) -> None:
        self.mode = check_progress(progress)
        self.stage, self.total, self.unit = stage, int(total), unit
        self.final_line = final_line
        self.stream = sys.stderr if stream is None else stream
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = self.last_printed = time.perf_counter()
        self.printed = False

    def update(self, done: int, **figures: Any) -> ProgressEvent:
        now = time.perf_counter()
        event = ProgressEvent(self.stage, int(done), self.total, self.unit, now - self.started,
                              figures)
        if callable(self.mode) and not isinstance(self.mode, bool):
            self.mode(event)
            return event
        final = event.done >= self.total
        if not self._shown(event, now, final):
            return event
        if self.terminal:
            end = "\n" if final else ""
            self.stream.write(f"\r{event.line()}\x1b[K{end}")
        else:
            self.stream.write(event.line() + "\n")
        self.stream.flush()
        self.printed, self.last_printed = True, now
        return event

    def _shown(self, event, now, final):
        if self.mode is False:
            return False
        if self.mode is None and not self.printed and event.elapsed < MIN_SECONDS:
            return False
        if final:
            return self.final_line and (self.printed or self.mode is True
                                        or event.elapsed >= MIN_SECONDS)
        return self.terminal or now - self.last_printed >= PLAIN_EVERY or \
            (self.mode is True and not self.printed)

    def clear(self):
        """Remove an in-place line from the terminal (before another line is printed)."""
        if self.terminal and self.printed:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class TqdmBars:
    """A progress callable drawing one tqdm bar per stage (see ``tqdm``)."""

    def __init__(self, bar: Callable[..., Any], options: dict[str, Any]) -> None:
        self._bar, self.options = bar, options
        self.bars: dict[str, Any] = {}

    def __call__(self, event: ProgressEvent) -> None:
        bar = self.bars.get(event.stage)
        if bar is not None and event.done < bar.n:        # the same stage begun again
            bar.close()
            bar = None
        if bar is None:
            bar = self.bars[event.stage] = self._bar(total=event.total, desc=event.stage,
                                                     unit=f" {event.unit}", **self.options)
        bar.update(event.done - bar.n)
        if event.figures:
            bar.set_postfix({key: _shown(key, value) for key, value in event.figures.items()},
                            refresh=False)
        if event.done >= event.total:
            bar.close()
            del self.bars[event.stage]

    def close(self) -> None:
        """Close the bars of stages that did not finish (an interrupted call)."""
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def tqdm(**options: Any) -> TqdmBars:
    """``progress=npdistill.progress.tqdm()``: a tqdm bar per stage (``tqdm.auto``: a
    widget in Jupyter, a text bar elsewhere), with the stage's running figures as its
    postfix, closed when the stage is done. ``options`` go to every bar (``leave=False``,
    ``file=``...). tqdm is optional: an ImportError says how to install it."""
    try:
        from tqdm.auto import tqdm as bar
    except ImportError:
        raise ImportError("progress.tqdm() draws tqdm bars: pip install tqdm") from None
    return TqdmBars(bar, options)
