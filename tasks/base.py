"""What every task shares: loading the configured splits, slicing, hold-out splits, encoding."""

from __future__ import annotations

import logging

from .errors import DataError

from . import io

log = logging.getLogger("trainsuite")


class Task:
    """Raw records -> model inputs, and the metrics that judge predictions.

    A task knows nothing about trainers: it is given a config, a tokenizer and datasets.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.stats: dict = {}  # split -> counts of what loading and encoding kept, skipped or cut

    # -- loading -------------------------------------------------------------
    def load(self, mode: str, predict_input: str | None = None) -> dict:
        """Raw, checked splits for a command: train (+eval), eval, or predict."""
        d = self.cfg.data
        out = {}
        if mode == "predict":
            column = self.line_column()
            if column is not None and io.is_plain_text(predict_input):
                ds = io.load_lines(predict_input, "--input", column)
            else:
                ds = io.load_split(predict_input, "--input", "test")
            self.check(ds, "predict", predict_input)
            return {"predict": ds}
        if mode == "train" or d.eval is None:
            if d.train is None:
                raise DataError("config: data.train is required" +
                                ("" if mode == "train" else " (or set data.eval)"))
            out["train"] = self._read(d.train, "data.train", "train")
        if d.eval is not None:
            out["eval"] = self._read(d.eval, "data.eval", "validation")
        elif d.eval_fraction:
            parts = out["train"].train_test_split(test_size=d.eval_fraction, seed=self.cfg.seed)
            out["train"], out["eval"] = parts["train"], parts["test"]
            log.info("held out %d of %d training rows for evaluation (data.eval_fraction=%s)",
                     len(out["eval"]), len(out["train"]) + len(out["eval"]), d.eval_fraction)
        if mode == "eval":
            if "eval" not in out:
                raise DataError("config: evaluation needs data.eval (or data.eval_fraction)")
            out.pop("train", None)
        for split, limit in (("train", d.max_train_samples), ("eval", d.max_eval_samples)):
            if split in out and limit is not None and len(out[split]) > limit:
                out[split] = out[split].select(range(limit))
        return {split: io.compact(ds) for split, ds in out.items()}

    def _read(self, spec, key: str, hub_split: str):
        ds = io.load_split(spec, key, hub_split)
        self.check(ds, key, spec)
        return ds

    def check(self, ds, key: str, spec) -> None:
        """Row-level checks; raise DataError naming file, line and column."""

    def line_column(self) -> str | None:
        """The input column that a plain text `predict --input` file fills, one row a line; None
        when one line cannot be one input."""
        return None

    # -- to be defined by each task ------------------------------------------
    def texts_for_tokenizer(self, ds):
        raise NotImplementedError

    def setup(self, splits: dict, tokenizer) -> None:
        """Fit what depends on the data (label maps, ...)."""

    def save(self, output_dir: str) -> None:
        """Write what a trained model needs besides its weights (rank 0, once training starts)."""

    def encode(self, ds, tokenizer, split: str):
        raise NotImplementedError

    def compute_metrics(self, eval_pred) -> dict:
        return {}


def where(spec, row) -> str:
    """'file: line N' for messages."""
    src = spec if isinstance(spec, str) else "data"
    return f"{src}: line {row.get(io.LINE, '?')}"
