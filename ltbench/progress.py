"""Progress inside long loops (epochs, feature extraction, SWAG pool passes, grids).

One small API, whatever the output is:

- stderr is a terminal: a live tqdm bar with items/s (images/s) and ETA;
- stderr is a file or pipe (CI, ``nohup``, ``| tee``): plain lines, one every ``every_s`` seconds or each time
  another ``every_frac`` of the total is done, whichever comes first, each with the rate and ETA, and one closing
  line with the total time, so a log shows the run is alive without carriage-return noise;
- ``quiet``: nothing at all.

Typical use, counting images rather than batches::

    from ltbench.progress import track
    for x, y in track(loader, total=len(loader.dataset), desc="stage 1 epoch 3/200", unit="img",
                      weight=lambda batch: len(batch[0]), quiet=quiet):
        ...

or, when the loop is not a plain iteration, ``with Progress(total, desc) as p: ... p.update(n)``.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

EVERY_S = 30.0    # plain mode: at least one line this often while work goes on ...
EVERY_FRAC = 0.1  # ... and one each time another tenth of the total is done


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``1 entry``, ``0 entries``: counts in every message read the same."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def format_duration(s: float) -> str:
    """'1h02m', '3m20s', '12s' (ETA and elapsed time in the plain lines)."""
    s = max(0, int(round(s)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Counts work done; shows it as a live bar (terminal), periodic plain lines (not a terminal) or not at all.

    ``tty`` and ``clock`` default to ``stream.isatty()`` and ``time.monotonic``; tests pass them to fake a
    terminal or time without sleeping.
    """

    def __init__(self, total: int | None, desc: str = "", unit: str = "img", stream: TextIO | None = None,
                 quiet: bool = False, tty: bool | None = None, every_s: float = EVERY_S,
                 every_frac: float = EVERY_FRAC, clock: Callable[[], float] | None = None,
                 closing_line: bool = True) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = (self.stream.isatty() if hasattr(self.stream, "isatty") else False) if tty is None else tty
        self.every_s, self.every_frac = every_s, every_frac
        self.clock = clock or time.monotonic
        self.n = 0
        self.start = self.last_line = self.clock()
        self.tick = 1  # plain mode: the next line is due when tick * every_frac of the total is done
        self.closed = False
        self.closing_line = closing_line  # plain mode: False when the caller prints its own summary line
        self.bar = None
        if not quiet and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=self.stream, leave=True,
                            dynamic_ncols=True, mininterval=0.5 if clock is None else 0.0)
            if clock is not None:  # tqdm reads its own clock; follow the injected one (tests)
                self.bar._time = clock
                self.bar.start_t = self.bar.last_print_t = clock()

    @property
    def rate(self) -> float:
        """Items per second since the start (0 before any time has passed)."""
        dt = self.clock() - self.start
        return self.n / dt if dt > 0 else 0.0

    def _line(self, now: float) -> str:
        dt = now - self.start
        rate = self.n / dt if dt > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            eta = format_duration((self.total - self.n) / rate) if rate > 0 else "?"
            return (f"{head}{self.n:,}/{self.total:,} {self.unit} ({100 * self.n / self.total:.0f}%), "
                    f"{rate:,.1f} {self.unit}/s, elapsed {format_duration(dt)}, ETA {eta}")
        return f"{head}{self.n:,} {self.unit}, {rate:,.1f} {self.unit}/s, elapsed {format_duration(dt)}"

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _tick_at(self, k: int) -> float:
        return k * self.every_frac * self.total - 1e-9  # 3 * 0.1 * 1000 is 300.00000000000006 in floats

    def update(self, n: int = 1) -> None:
        """Record ``n`` more items done."""
        self.n += n
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = self.clock()
        frac_due = bool(self.total) and self.n >= self._tick_at(self.tick) and self.n < self.total
        if frac_due or now - self.last_line >= self.every_s:
            self._print(self._line(now))
            self.last_line = now
            if self.total:
                while self._tick_at(self.tick) <= self.n:
                    self.tick += 1

    def close(self) -> None:
        """Finish: close the bar, or print one closing line with the count, total time and rate."""
        if self.closed:
            return
        self.closed = True
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.close()
            return
        if not self.closing_line:
            return
        now = self.clock()
        dt = now - self.start
        head = f"{self.desc}: " if self.desc else ""
        rate = f", {self.n / dt:,.1f} {self.unit}/s" if dt > 0 else ""
        self._print(f"{head}done, {self.n:,} {self.unit} in {format_duration(dt)}{rate}")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Activity:
    """The long step this process is in now ("stage 1 [sgd] 27/200 epochs done, ~1h49m to go"), for a status line
    that cannot see a silenced run's own output: the grid's heartbeat, which otherwise says only "0/6 runs done" for
    the hours a stage-1 network trains. The loop sets it (``with ACTIVITY.running(...)``, then ``update`` each
    step); readers call ``text``.

    The time to go is the pace of the steps done since ``begin`` (resumed steps do not count towards the pace),
    counted from the last ``update`` and less the time since, so it falls between two updates instead of growing.
    All state is read and written under one lock (the heartbeat reads it from another thread).
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._label: str | None = None
        self._total = self._done = self._first = 0
        self._unit = ""
        self._started = self._at = 0.0
        self._begun: object | None = None

    def begin(self, label: str, total: int, done: int = 0, unit: str = "epochs") -> None:
        """A loop of ``total`` steps starts, ``done`` of them already done (a resume)."""
        with self._lock:
            self._label, self._total, self._done, self._first, self._unit = label, total, done, done, unit
            self._started = self._at = self._clock()
            self._begun = object()  # which begin the line is from (``running`` restores only its own)

    def update(self, done: int) -> None:
        """``done`` steps are done now."""
        with self._lock:
            self._done, self._at = done, self._clock()

    def end(self) -> None:
        """The loop is over (or failed): nothing to say any more."""
        with self._lock:
            self._label, self._begun = None, None

    def _state(self) -> tuple:
        with self._lock:
            return (self._label, self._total, self._done, self._first, self._unit, self._started, self._at,
                    self._begun)

    @contextlib.contextmanager
    def running(self, label: str, total: int, done: int = 0, unit: str = "epochs") -> Iterator["Activity"]:
        """``begin`` now and, when the block is left (also by an exception: no stale line afterwards), give the
        line back to what it said before: nothing, or the step this one ran inside (a nested step does not
        leave its enclosing one without a line). Only if the line is still this block's: a block left late (a
        generator closed when it is collected) must not overwrite a step begun since."""
        outer = self._state()
        self.begin(label, total, done, unit)
        mine = self._begun
        try:
            yield self
        finally:
            with self._lock:
                if self._begun is mine:
                    (self._label, self._total, self._done, self._first, self._unit, self._started, self._at,
                     self._begun) = outer

    def text(self, fmt: Callable[[float], str] = format_duration) -> str | None:
        """``label done/total unit done`` and, once a step finished since ``begin``, ``~T to go`` (``fmt`` formats
        the seconds); None when idle."""
        with self._lock:
            if self._label is None:
                return None
            head = f"{self._label} {self._done}/{self._total} {self._unit} done"
            ran = self._done - self._first
            if ran <= 0 or self._done >= self._total:
                return head
            per_step = (self._at - self._started) / ran
            left = max(0.0, (self._total - self._done) * per_step - (self._clock() - self._at))
            return f"{head}, ~{fmt(left)} to go"


ACTIVITY = Activity()  # this process's only: a --jobs worker's is not read (its lines come with --verbose)


def track(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "img",
          weight: Callable[[T], int] | None = None, **kw) -> Iterator[T]:
    """Yield from ``iterable`` while showing progress; ``weight(item)`` is how many units an item is (e.g. the
    images in a batch; default 1). ``total`` is in the same units (default ``len(iterable)`` when it has one).
    Other keywords go to ``Progress`` (``quiet``, ``stream``, ``tty``, ``every_s``, ``every_frac``, ``clock``)."""
    if total is None and weight is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc=desc, unit=unit, **kw) as p:
        for item in iterable:
            yield item
            p.update(weight(item) if weight else 1)
