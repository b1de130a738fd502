"""What from_pretrained could not match between a checkpoint and the model, said in one line.

transformers logs a table (its LOAD REPORT) of every weight the checkpoint lacks or holds in excess. Fine-
tuning expects one case: a task head on a pretrained body (a classification head on an encoder; a
pretraining head the checkpoint holds and the task model drops). That is logged at debug level; anything
else (a weight of the body missing or left unused, a shape mismatch) stays a warning, in one line.
"""

from __future__ import annotations

import contextlib
import logging

log = logging.getLogger("trainsuite")

REPORT_LOGGER = "transformers.modeling_utils"  # the logger from_pretrained writes its LOAD REPORT to
SHOWN = 5  # weights named in a warning


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextlib.contextmanager
def without_load_report():
    """While a model loads, transformers' LOAD REPORT is left out (report() says what it would have)."""
    logger = logging.getLogger(REPORT_LOGGER)
    drop = _DropLoadReport()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _in_body(key: str, prefix: str) -> bool:
    return bool(prefix) and (key == prefix or key.startswith(prefix + "."))


def report(model, name: str, info: dict) -> None:
    """`info`: from_pretrained(..., output_loading_info=True)'s dict of missing, unexpected and mismatched keys."""
    missing = sorted(info.get("missing_keys") or ())
    unexpected = sorted(info.get("unexpected_keys") or ())
    mismatched = sorted(str(k[0]) if isinstance(k, tuple) else str(k) for k in info.get("mismatched_keys") or ())
    if not (missing or unexpected or mismatched):
        return
    prefix = getattr(model, "base_model_prefix", "") or ""
    # a key outside the model's body (e.g. `classifier.weight` beside `bert.`) belongs to a task head
    head_only = prefix and hasattr(model, prefix) and not mismatched and not any(
        _in_body(k, prefix) for k in missing + unexpected)
    parts = []
    for what, keys in (("new (not in the checkpoint)", missing), ("unused (in the checkpoint only)", unexpected),
                       ("new (a shape mismatch)", mismatched)):
        if keys:
            more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
            parts.append(f"{what}: {', '.join(keys[:SHOWN])}{more}")
    if head_only:  # what fine-tuning a task head on a pretrained body means
        log.debug("model %s: task head weights %s", name, "; ".join(parts))
    else:
        log.warning("model %s: weights %s", name, "; ".join(parts))
