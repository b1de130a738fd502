"""Third-party notices that a run expects, kept below our own lines.

The user reads our lines first. A few libraries log a notice of their own at import time that says
nothing about this run, and that came before anything we said:
- kernels (a dependency of transformers >= 5.25): "Skipping publisher trust check for
  'kernels-community/quantization-bitsandbytes' ..." -- bitsandbytes asks the hub for a CPU kernel when it
  is imported on a CPU with AVX512-BF16;
- bitsandbytes: "Failed to load CPU gemm_4bit_forward ..." when that kernel is not there (4/8-bit works
  without it);
- DeepSpeed: "Setting accelerator to CPU ..." on a machine without a GPU.
These, matched by logger and by the start of the message, are logged at debug level on the
"trainsuite.notices" logger instead; any other notice of the same libraries still shows. (transformers'
LOAD REPORT of a new task head is handled where the model loads: suites/modeling.py.)
"""

from __future__ import annotations

import logging

# (logger name or its parent, start of the message)
EXPECTED = (
    ("kernels", "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'"),
    ("bitsandbytes", "Failed to load CPU gemm_4bit_forward"),
    ("DeepSpeed", "Setting accelerator to CPU"),
)
# loggers with a handler of their own that do not pass their records on to the root logger's
OWN_HANDLER = ("DeepSpeed",)

log = logging.getLogger("trainsuite.notices")


def expected(record: logging.LogRecord) -> bool:
    for name, start in EXPECTED:
        if record.name == name or record.name.startswith(name + "."):
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a record whose arguments do not format is not one of ours
                return False
            if message.startswith(start):
                return True
    return False


class ExpectedToDebug(logging.Filter):
    """Passes every record but the expected notices, which go to the debug log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not expected(record):
            return True
        log.debug("%s: %s", record.name, record.getMessage())
        return False


FILTER = ExpectedToDebug()


def install(handlers) -> None:
    """Route the expected notices to the debug log: on `handlers` (ours, on the root logger: the records
    of the libraries' own loggers reach them) and on the loggers that keep their records to themselves."""
    for handler in handlers:
        handler.addFilter(FILTER)
    for name in OWN_HANDLER:
        logging.getLogger(name).addFilter(FILTER)
