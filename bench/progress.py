"""Progress that a person can read: tqdm bars on a terminal; plain lines with an ETA every ``every`` seconds when
stderr is a file or a pipe (a log of a background job gets no carriage returns or cursor escapes)."""
from __future__ import annotations

import sys
import time


class PlainProgress:
    def __init__(self, iterable=None, total=None, desc: str = "", every: float = 30.0, initial: int = 0,
                 stream=None, clock=time.monotonic):
        self.iterable, self.desc, self.every, self.clock = iterable, desc, every, clock
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.start_n, self.postfix = initial, initial, ""
        self.stream = stream or sys.stderr
        self.t0 = self.last = clock()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last >= self.every:
            self._line()

    def set_postfix(self, **kw) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def _line(self, final: bool = False) -> None:
        self.last = now = self.clock()
        elapsed = now - self.t0
        done = self.n - self.start_n
        eta = ""
        if self.total and done and not final:
            eta = f", ETA {(self.total - self.n) * elapsed / done:.0f} s"
        of = f"/{self.total}" if self.total else ""
        post = f" ({self.postfix})" if self.postfix else ""
        self.stream.write(f"{self.desc}: {self.n}{of} after {elapsed:.0f} s{eta}{post}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.iterable is not None or self.n:
            self._line(final=True)
        self.iterable = None


def progress(iterable=None, total=None, desc: str = "", enabled: bool = True, leave: bool = True, initial: int = 0):
    """A tqdm bar on a terminal, PlainProgress elsewhere, nothing when disabled."""
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, leave=leave, initial=initial, dynamic_ncols=True)
    return PlainProgress(iterable, total=total, desc=desc, initial=initial)
