"""Text classification: single-label, multi-label and regression, on one text or a text pair.

Labels may be strings or integers; the label <-> id map is fitted on the training split (or
taken from `data.labels`, or from a trained checkpoint's config) and saved in the model config.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter

import numpy as np

from .errors import DataError

from . import io
from .base import Task, where
from .metrics import classification as M

log = logging.getLogger("trainsuite")
LABEL_FILE = "label_map.json"  # beside the model: the label order, also for adapter-only runs
SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"


def required_columns(cfg, cols, split) -> list[str]:
    d = cfg.data
    need = [d.text_column] + ([d.text_pair_column] if d.text_pair_column else [])
    return need + [d.label_column]


def _as_number(v):
    """A label read as text that spells a number, as that number; anything else as it is.

    A whole float is an int (1.0 and 1 are one label: pandas writes integer columns with gaps as
    floats). Text that does not spell its number back ("01", "007", "1_000") stays text: such
    labels are codes, and "01" and "1" are two of them.
    """
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if not isinstance(v, str):
        return v
    s = v.strip()
    try:
        i = int(s)
        return i if str(i) == s else v
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        return v
    return int(f) if f.is_integer() else f


def _looks_numeric(v) -> bool:
    """A label that is a number or text spelling one ("0", "1.5", " 2", "01"); true/false are not."""
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    if not isinstance(v, str):
        return False
    try:
        float(v.strip())
    except ValueError:
        return False
    return True


def length_order(input_ids) -> list[int]:
    """Row indices, longest first (ties in file order)."""
    return sorted(range(len(input_ids)), key=lambda i: -len(input_ids[i]))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def label_value(name: str):
    """A label name as the data wrote it: "1" of a file of 0/1 labels is the int 1 (names are kept as text
    in the label map; text that does not spell its number back, like "01", stays text)."""
    return _as_number(name)


def _names(labels) -> list[str]:
    """Label names as the data's labels are named (data.labels: [0.0, 1.0] are "0" and "1")."""
    return [str(_as_number(x)) for x in labels]


# what compute_metrics returns per problem type (metric_for_best_model must name one)
METRICS = {SINGLE: ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "mcc"),
           MULTI: ("f1_micro", "f1_macro", "subset_accuracy"),
           REGRESSION: ("mse", "mae", "pearson", "spearman")}


class ClassificationTask(Task):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.problem_type = cfg.data.problem_type
        self.labels: list[str] = []  # id -> label name
        self.class_weights: list[float] | None = None
        self.eval_texts: list[str] | None = None  # for eval_predictions.jsonl (the run report)
        self.eval_order: list[int] | None = None  # eval row i of the encoded dataset is file row eval_order[i]

    def line_column(self) -> str | None:
        d = self.cfg.data  # `predict --input texts.txt`: one text a line (a pair needs two columns)
        return d.text_column if d.text_pair_column is None else None

    # -- checks --------------------------------------------------------------
    def check(self, ds, key, spec) -> None:
        d = self.cfg.data
        cols = set(ds.column_names)
        need = [d.text_column] + ([d.text_pair_column] if d.text_pair_column else [])
        if key != "predict":
            need.append(d.label_column)
        for col in need:
            if col not in cols:
                raise DataError(f"{key}: {spec}: no column '{col}' (found: {', '.join(sorted(cols - {io.LINE}))})")
        text_cols = need[:2] if d.text_pair_column else need[:1]
        for col in text_cols:
            for i, t in enumerate(io.values(ds, col)):
                # predict keeps empty texts (an empty line of a plain text --input): row n answers input n
                if t is None or (key != "predict" and not str(t).strip()):
                    raise DataError(f"{where(spec, ds[i])}: column '{col}' is empty")
        if key != "predict":
            labels = io.values(ds, d.label_column)
            for i, v in enumerate(labels):
                if v is None or (isinstance(v, str) and not v.strip()):
                    raise DataError(f"{where(spec, ds[i])}: column '{d.label_column}' is empty")
            # listed label names are taken as given; regression says which value is not a number, when encoded
            if d.labels is None and self.problem_type != REGRESSION:
                self._check_one_label_kind(ds, labels, spec)

    def _check_one_label_kind(self, ds, labels, spec) -> None:
        """Labels that are partly numbers and partly names ("0", "1", "pos") are a mistake in every
        format: JSON data that mixes 1 and "pos" is refused when read (tasks/io.py), and CSV/TSV
        fields, all text, meet the same rule here (as do JSON labels written "0" beside "pos")."""
        col, first = self.cfg.data.label_column, None
        for i, v in enumerate(labels):
            for x in v if isinstance(v, list) else [v]:
                kind = "a number" if _looks_numeric(x) else "text"
                if first is None:
                    first = (kind, i)
                elif kind != first[0]:
                    line = ds[first[1]].get(io.LINE, "?")
                    raise DataError(f"{where(spec, ds[i])}: field '{col}' is {kind} here but {first[0]} on line "
                                    f"{line}; use one type per field (or list the label names in data.labels)")

    # -- labels --------------------------------------------------------------
    def setup(self, splits, tokenizer) -> None:
        d = self.cfg.data
        trained = self._checkpoint_labels()
        if tokenizer.pad_token is None:  # decoder LMs (GPT-2, Llama) ship without one
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if "train" in splits:
            # csv/tsv give every field as text: "0.5" is a number, "10" sorts after "9"
            train_labels = io.values(splits["train"], d.label_column)
            seen = list(train_labels)
            if d.eval is None and "eval" in splits:  # held out of the same file (data.eval_fraction)
                seen += io.values(splits["eval"], d.label_column)  # a rare label may land only there
            values = [_as_number(v) for v in seen]
            self.problem_type = self.problem_type or self._detect(values)
            if self.problem_type == REGRESSION:
                self.labels = []
            elif d.labels is not None:
                self.labels = _names(d.labels)
            else:
                flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
                uniq = sorted(set(flat), key=lambda x: (not _is_number(x), x if _is_number(x) else str(x)))
                self.labels = [str(x) for x in uniq]
        elif trained is not None:
            self.problem_type = self.problem_type or trained[0]
            self.labels = _names(d.labels) if d.labels is not None else trained[1]
        elif d.labels is not None:
            self.labels = _names(d.labels)
            self.problem_type = self.problem_type or SINGLE
        else:
            trained_here = os.path.isfile(os.path.join(self.cfg.output_dir, LABEL_FILE))
            hint = f"; to use the model trained into {self.cfg.output_dir}, add model.name_or_path=" \
                f"{self.cfg.output_dir}" if trained_here else ""
            raise DataError(f"config: evaluating a model without a trained classification head "
                            f"({self.cfg.model.name_or_path}): set data.labels (the label names in id order){hint}")
        if self.problem_type != REGRESSION and len(self.labels) < 2:
            raise DataError(f"data.train: only one label ({self.labels}) in column '{d.label_column}'; "
                            "classification needs at least two")
        self.label2id = {name: i for i, name in enumerate(self.labels)}
        if "train" in splits:
            self._check_loss_options()
            self._check_best_metric()
        if "train" in splits and self.problem_type == SINGLE:
            self.class_weights = self._class_weights(train_labels)
        if self.problem_type == REGRESSION:
            log.info("classification: regression (one output, column '%s')", d.label_column)
        else:
            log.info("classification: %s, %d labels %s", self.problem_type, len(self.labels), self.labels[:10])

    def save(self, output_dir: str) -> None:
        with open(os.path.join(output_dir, LABEL_FILE), "w") as fh:
            json.dump({"problem_type": self.problem_type, "labels": self.labels}, fh, indent=1)

    def _checkpoint_labels(self):
        """(problem_type, labels) from a fine-tuned checkpoint's config.json, if it has a head."""
        path = io.resolve_model(self.cfg.model.name_or_path) if self.cfg.model.name_or_path else None
        label_file = os.path.join(path, LABEL_FILE) if path else None
        if label_file and os.path.isfile(label_file):  # written by our training runs (LoRA ones too)
            with open(label_file) as fh:
                saved = json.load(fh)
            return saved["problem_type"], saved["labels"]
        cfg_file = os.path.join(path, "config.json") if path else None
        if not cfg_file or not os.path.isfile(cfg_file):
            return None
        with open(cfg_file) as fh:
            conf = json.load(fh)
        archs = conf.get("architectures") or []
        if not any("SequenceClassification" in a for a in archs) or "id2label" not in conf:
            return None
        id2label = {int(k): v for k, v in conf["id2label"].items()}
        return conf.get("problem_type") or SINGLE, [id2label[i] for i in sorted(id2label)]

    @staticmethod
    def _detect(values) -> str:
        if any(isinstance(v, list) for v in values):
            return MULTI
        # whole floats are ints by now: a float left is a fraction (or nan/inf, refused when encoded)
        if all(_is_number(v) for v in values) and any(isinstance(v, float) for v in values):
            return REGRESSION
        return SINGLE

    def _check_loss_options(self) -> None:
        """Options the loss of this problem type would ignore are refused, not dropped silently."""
        loss = self.cfg.loss
        if self.problem_type != SINGLE and loss.class_weights is not None:
            raise DataError(f"config: loss.class_weights applies to single-label classification, not to "
                            f"{self.problem_type} (data.label_column '{self.cfg.data.label_column}')")
        if self.problem_type != SINGLE and loss.label_smoothing:
            raise DataError(f"config: loss.label_smoothing applies to single-label classification, not to "
                            f"{self.problem_type}")
        if loss.label_smoothing is not None and not 0 <= loss.label_smoothing < 1:
            raise DataError(f"config: loss.label_smoothing must be at least 0 and below 1, got {loss.label_smoothing}")
        if self.problem_type == MULTI and not 0 < loss.multi_label_threshold < 1:
            raise DataError("config: loss.multi_label_threshold is a probability and must be between 0 and 1, "
                            f"got {loss.multi_label_threshold}")

    def metric_names(self) -> list[str]:
        names = list(METRICS[self.problem_type])
        if self.problem_type == SINGLE and len(self.labels) == 2:
            names.append("f1")  # of the second label (id 1)
        return names

    def _check_best_metric(self) -> None:
        """A metric_for_best_model that evaluation never reports fails at the first evaluation, after
        an epoch of training: refuse it now, naming the ones there are."""
        metric = self.cfg.train.get("metric_for_best_model")
        if not metric:
            return
        name = metric[len("eval_"):] if metric.startswith("eval_") else metric
        known = ["loss"] + self.metric_names()
        if name not in known + ["runtime", "samples_per_second", "steps_per_second"]:
            kind = f"{self.problem_type}, {len(self.labels)} labels" if self.labels else self.problem_type
            raise DataError(f"config: train.metric_for_best_model: '{metric}' is not a metric of this run "
                            f"({kind}); choose one of: {', '.join(known)}")

    def _class_weights(self, values):
        cw = self.cfg.loss.class_weights
        if cw is None:
            return None
        if cw == "auto":  # inverse frequency, mean weight 1
            counts = Counter(str(_as_number(v)) for v in values)
            n, k = len(values), len(self.labels)
            return [n / (k * counts[name]) if counts[name] else 0.0 for name in self.labels]
        if not isinstance(cw, list) or len(cw) != len(self.labels) or not all(
                _is_number(x) and math.isfinite(x) and x >= 0 for x in cw) or not any(cw):
            raise DataError(f"config: loss.class_weights must be 'auto' or a list of {len(self.labels)} "
                            f"non-negative numbers, not all 0 (one per label, in order {self.labels}); got {cw}")
        return [float(x) for x in cw]

    def _label_id(self, raw, row, spec) -> int:
        v = _as_number(raw)
        name = str(v)
        if name not in self.label2id and str(raw) in self.label2id:  # a run saved before names were normalised
            name = str(raw)
        if name not in self.label2id:
            if isinstance(v, int) and not isinstance(v, bool):
                raise DataError(f"{where(spec, row)}: label {v} in column '{self.cfg.data.label_column}' "
                                f"is out of range (known labels: {', '.join(self.labels)})")
            raise DataError(f"{where(spec, row)}: unknown label {v!r} in column "
                            f"'{self.cfg.data.label_column}' (known: {', '.join(self.labels[:20])})")
        return self.label2id[name]

    # -- encoding ------------------------------------------------------------
    def texts_for_tokenizer(self, ds):
        d = self.cfg.data
        pairs = io.values(ds, d.text_pair_column) if d.text_pair_column else None
        for i, text in enumerate(io.values(ds, d.text_column)):
            yield str(text)
            if pairs is not None:
                yield str(pairs[i])

    def encode_labels(self, ds, split):
        d = self.cfg.data
        spec = getattr(d, split, None) if split in ("train", "eval") else "--input"
        if split == "eval" and d.eval is None:
            spec = d.train  # held out of the training file by data.eval_fraction
        out = []
        lines = io.values(ds, io.LINE) if io.LINE in ds.column_names else None
        known = {}  # (type, raw label) -> id: a split holds few distinct labels, each parsed once

        def label_id(x, row):
            key = (type(x), x)
            try:
                hash(key)
            except TypeError:  # unhashable (a list inside a list): no shortcut
                return self._label_id(x, row, spec)
            if key not in known:
                known[key] = self._label_id(x, row, spec)
            return known[key]

        for i, v in enumerate(io.values(ds, d.label_column)):
            row = {io.LINE: lines[i]} if lines is not None else {}  # what the messages read of a row
            if self.problem_type == REGRESSION:
                try:
                    f = float(v)
                except (TypeError, ValueError):
                    raise DataError(f"{where(spec, row)}: label {v!r} is not a number "
                                    "(problem_type: regression)") from None
                if not math.isfinite(f):  # a NaN target makes every loss after it NaN
                    raise DataError(f"{where(spec, row)}: label {v!r} is not a finite number "
                                    "(problem_type: regression)")
                out.append(f)
            elif self.problem_type == MULTI:
                vec = [0.0] * len(self.labels)
                for x in (v if isinstance(v, list) else [v]):
                    vec[label_id(x, row)] = 1.0
                out.append(vec)
            else:
                out.append(label_id(v, row))
        return out

    def encode(self, ds, tokenizer, split):
        d = self.cfg.data
        texts = io.values(ds, d.text_column)
        pair = io.values(ds, d.text_pair_column) if d.text_pair_column else None
        # input_ids only (token types for pairs): the collator builds the all-ones attention mask and
        # single-text token types itself (collators/classification.py)
        enc = tokenizer([str(t) for t in texts],
                        [str(t) for t in pair] if pair is not None else None,
                        truncation=True, max_length=d.max_length, return_attention_mask=False,
                        return_token_type_ids=pair is not None and "token_type_ids" in tokenizer.model_input_names)
        columns = dict(enc)
        if split == "eval":
            self.eval_texts = [str(t) if pair is None else f"{t} || {p}"
                               for t, p in zip(texts, pair if pair is not None else texts)]
        if split != "predict":  # predict never reads labels: an unknown or empty one must not stop it
            columns["labels"] = self.encode_labels(ds, split)
        import datasets

        if split == "eval":  # longest first: batches of alike lengths carry little padding
            self.eval_order = length_order(columns["input_ids"])
            columns = {k: [v[i] for i in self.eval_order] for k, v in columns.items()}
        return datasets.Dataset.from_dict(columns)

    # -- metrics -------------------------------------------------------------
    def compute_metrics(self, eval_pred) -> dict:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        if self.eval_order is not None and len(labels) == len(self.eval_order):
            # the eval rows ran longest first: back to the file's order (eval_predictions.jsonl)
            back = np.argsort(np.asarray(self.eval_order), kind="stable")
            logits, labels = np.asarray(logits)[back], np.asarray(labels)[back]
        if self.problem_type in (REGRESSION, MULTI):
            from .eval_rows import multi_label_rows, regression_rows

            if self._eval_rows_wanted(labels):
                self._write_eval_rows(regression_rows(self.eval_texts, logits, labels) if self.problem_type == REGRESSION
                                      else multi_label_rows(self.eval_texts, logits, labels, self.labels,
                                                            self.cfg.loss.multi_label_threshold, label_value))
        if self.problem_type == REGRESSION:
            return M.regression(logits, labels)
        if self.problem_type == MULTI:
            return M.multi_label(logits, labels, self.cfg.loss.multi_label_threshold)
        metrics, cm = M.single_label(logits, labels, len(self.labels))
        self.save_confusion_matrix(cm)
        self.save_eval_predictions(logits, labels)
        return metrics

    def _eval_rows_wanted(self, labels) -> bool:
        return int(os.environ.get("RANK", "0")) == 0 and self.eval_texts is not None and \
            len(self.eval_texts) == len(labels)

    def save_eval_predictions(self, logits, labels) -> None:
        """OUTPUT_DIR/eval_predictions.jsonl: text, true and predicted label, confidence (for the report)."""
        if not self._eval_rows_wanted(labels):
            return
        probs = M.softmax(logits)
        rows = []
        for text, y, p in zip(self.eval_texts, np.asarray(labels).reshape(-1), probs):
            k = int(p.argmax())
            rows.append({"text": text, "label": label_value(self.labels[int(y)]),
                         "predicted": label_value(self.labels[k]),
                         "confidence": round(float(p[k]), 6), "p_label": round(float(p[int(y)]), 6)})
        self._write_eval_rows(rows)

    def _write_eval_rows(self, rows) -> None:
        io.write_jsonl(os.path.join(self.cfg.output_dir, "eval_predictions.jsonl"), rows)

    def save_confusion_matrix(self, cm) -> None:
        if int(os.environ.get("RANK", "0")) != 0:
            return
        os.makedirs(self.cfg.output_dir, exist_ok=True)
        path = os.path.join(self.cfg.output_dir, "confusion_matrix.json")
        with open(path, "w") as fh:  # its PNG is drawn once, by the run report (suites/outputs/report.py)
            json.dump({"labels": self.labels, "matrix": cm}, fh, indent=1)
