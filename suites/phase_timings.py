"""Where the wall time of a `trainsuite train` goes: start-up (interpreter and imports, up to the
run), data preparation phase by phase, the training loop, each evaluation, checkpoint saves, the
final evaluation and save, and the report. Written to OUTPUT_DIR/phase_timings.json and logged as
one line (benchmarks/end_to_end.py reads the file)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time

log = logging.getLogger("trainsuite")
FILE = "phase_timings.json"


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), None elsewhere."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = float(fh.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


class Phases:
    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.events: dict[str, list] = {}  # name -> durations of repeated events (checkpoint saves)

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)

    def event(self, name: str, seconds: float) -> None:
        self.events.setdefault(name, []).append(round(seconds, 4))


current = Phases()


def start_run() -> Phases:
    """A new record, with the start-up time up to now."""
    global current
    current = Phases()
    age = process_age()
    if age is not None:
        current.seconds["startup_and_imports"] = round(age, 4)
    return current


def write(output_dir: str, log_history: list) -> dict:
    """The record plus each evaluation's runtime from the log history; rank 0 writes it."""
    evals = [round(r["eval_runtime"], 4) for r in log_history if isinstance(r.get("eval_runtime"), (int, float))]
    out = {**current.seconds, "evaluations_s": evals, **{f"{k}_s": v for k, v in current.events.items()}}
    if int(os.environ.get("RANK", "0")) == 0 and os.path.isdir(output_dir):
        with open(os.path.join(output_dir, FILE), "w") as fh:
            json.dump(out, fh, indent=1)
    log.info("phases (s): %s", ", ".join(f"{k} {v if not isinstance(v, list) else sum(v):.2f}"
                                          for k, v in out.items()))
    return out
