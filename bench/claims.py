"""Claims, so that several `dilmbench run` processes on one --out split the grid instead of each doing all of it.

Before a process makes a set or evaluates a run it takes that item's claim: a file under ``<out>/.claims/`` created
atomically (O_CREAT | O_EXCL) holding its host, pid and start time. Another process that finds the claim leaves the
run to its owner, and waits for a set it needs. A claim whose owner is gone does not block anyone: on the same host a
dead pid frees it at once; a claim from another host (a shared file system) is taken over once it is older than
``stale_after`` seconds. A finished item's claim is removed; the claims folder is outside runs/ and sets/, so
`dilmbench validate` never sees it.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Claims:
    def __init__(self, out: str | Path, stale_after: float = 6 * 3600):
        self.root = Path(out) / ".claims"
        self.stale_after = stale_after
        self.held: set[str] = set()
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}

    def _file(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:32]

    def _stale(self, path: Path) -> bool:
        try:
            owner = json.loads(path.read_text())
        except (OSError, ValueError):  # half-written by a process killed mid-write, or removed meanwhile
            try:
                return time.time() - path.stat().st_mtime > 60
            except OSError:
                return True
        if owner.get("host") == self.me["host"]:
            return owner.get("pid") != self.me["pid"] and not _alive(int(owner.get("pid", -1)))
        return time.time() - float(owner.get("since", 0)) > self.stale_after

    def take(self, key: str) -> bool:
        """True if this process now holds ``key`` (it took it, took over a stale claim, or held it already)."""
        if key in self.held:
            return True
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._file(key)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(path):
                    return False
                try:
                    path.unlink()  # a dead owner's claim: free it and try once more
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({**self.me, "since": time.time(), "key": key}, f)
            self.held.add(key)
            return True
        return False

    def release(self, key: str) -> None:
        if key in self.held:
            self.held.discard(key)
            try:
                self._file(key).unlink()
            except FileNotFoundError:
                pass

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)

    def wait(self, key: str, done, poll: float = 1.0) -> bool:
        """Wait while another live process holds ``key`` and ``done()`` is false; then take the claim unless
        ``done()``. Returns True if this process now holds it (the item is still to be made)."""
        while True:
            if done():
                return False
            if self.take(key):
                if done():  # finished between the check and the claim
                    self.release(key)
                    return False
                return True
            time.sleep(poll)
