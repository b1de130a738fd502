"""One run at a time in an output_dir.

A command that writes into output_dir (train, eval, predict) holds an flock on
OUTPUT_DIR/.trainsuite.lock while it runs; a second command into the same folder is refused at once
(exit 2) naming the holder. The kernel drops an flock when its process ends, however it ends, so a
crashed or SIGKILLed run leaves nothing stuck (at most the empty file, which the next run reuses).
In a multi-process launch only rank 0 takes the lock: the ranks of one launch share the folder,
and a second launch fails on its own rank 0, which ends that launch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time

from ..config.redact import redact_argv
from ..errors import UserError

LOCK_NAME = ".trainsuite.lock"
_made = set()  # output dirs that a lock held by this process created


def made_by_lock(output_dir: str) -> bool:
    """True when output_dir did not exist before this process locked it (it is a new run)."""
    return os.path.realpath(output_dir) in _made


def _holder(path: str) -> str:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        text = ""
    return f" ({text})" if text else ""


def _acquire(output_dir: str):
    path = os.path.join(output_dir, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"output_dir {output_dir} is in use by another run{_holder(path)}; wait for it "
                            "to end or choose another output_dir") from None
        try:  # the holder before us may have unlinked the file between our open and our flock
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(redact_argv(sys.argv)))
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}: {command}"[:500].encode())
    return fd, path


@contextlib.contextmanager
def hold(output_dir: str):
    """Hold output_dir for the duration of the block (rank 0 of a launch; other ranks pass)."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    real = os.path.realpath(output_dir)
    created = not os.path.isdir(real)
    os.makedirs(real, exist_ok=True)
    if created:
        _made.add(real)
    fd, path = _acquire(real)
    try:
        yield
    finally:
        _made.discard(real)
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiting opener sees another inode and retries
        os.close(fd)
        if created:  # a run that ended before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                os.rmdir(real)

