"""Sequence to sequence (translation, summarization): raw pairs -> token ids, and the metrics.

Three data forms give the same (source, target) pairs:
- rows with `data.source_column` / `data.target_column` (jsonl, csv, tsv, json, parquet);
- rows with a `translation: {en: ..., de: ...}` dict, read with `data.source_lang` / `data.target_lang`;
- aligned plain-text files, one sentence a line: `data.train: {source: train.en, target: train.de}`
  (the sides may also be named by the languages: `{en: train.en, de: train.de}` with source_lang /
  target_lang). tasks/io.py refuses files with different line counts.
Pairs with an empty side are skipped, counted and logged with their lines; a row without the
configured language key is an error naming file and line. Over-long sources and targets are
truncated and counted. The encoded split keeps the raw texts (`source_text`, `target_text`) so that
metrics and prediction files use the original strings, never a decode of padded labels.
"""

from __future__ import annotations

import logging

from .errors import DataError

from . import io
from .base import Task
from .metrics.generation import generation_metrics

log = logging.getLogger("trainsuite")

TRANSLATION = "translation"
SOURCE_TEXT, TARGET_TEXT = "source_text", "target_text"  # raw strings kept next to the ids


def _table(columns: dict):
    import datasets  # here, not at the top: the config check imports this module before anything heavy

    return datasets.Dataset.from_dict(columns)


def _layout(cfg, cols, split: str) -> tuple[str, str | None, bool]:
    """(source key, target key, translation form?) for a split whose columns are `cols`."""
    d = cfg.data
    if d.source_column in cols and (split == "predict" or d.target_column in cols):
        return d.source_column, d.target_column, False
    if d.source_lang and d.target_lang:
        if TRANSLATION in cols:
            return d.source_lang, d.target_lang, True
        if d.source_lang in cols and (split == "predict" or d.target_lang in cols):
            return d.source_lang, d.target_lang, False
    if split == "predict" and "source" in cols:  # predict rows may always say `source`
        return "source", None, False
    if TRANSLATION in cols and not (d.source_lang and d.target_lang):
        raise DataError(f"data: the rows hold a '{TRANSLATION}' dict: set data.source_lang and "
                        "data.target_lang (its keys, e.g. en and de)")
    return d.source_column, d.target_column, False


def required_columns(cfg, cols, split) -> list[str]:
    src, tgt, translation = _layout(cfg, cols, split)
    if translation:
        return [TRANSLATION]
    return [src] + ([tgt] if split != "predict" and tgt else [])


def _where(spec, line, word: str = "line") -> str:
    """'file: line N'; for a parallel pair 'train.en / train.de: line N'."""
    if isinstance(spec, dict):
        path = " / ".join(str(v) for v in spec.values())
    else:
        path = spec if isinstance(spec, str) else "data"
    return f"{path}: {word} {line}"


def _text(v, spec=None, line=None, field: str = "") -> str | None:
    """A text field as a string (numbers are written out); a list or a mapping is refused, never
    turned into its Python repr ("['a', 'b']") and trained on."""
    if v is None:
        return None
    if isinstance(v, (list, tuple, dict)):
        kind = "a mapping" if isinstance(v, dict) else "a list"
        raise DataError(f"{_where(spec, line)}: '{field}' is {kind}, not text; seq2seq needs one string "
                        "per source and target (join the parts first)")
    return v if isinstance(v, str) else str(v)


class Seq2SeqTask(Task):
    """Raw pairs -> {input_ids, labels, source_text, target_text} (the collator builds attention_mask)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.specs: dict = {}

    # -- loading -------------------------------------------------------------
    def line_column(self) -> str:
        return self.cfg.data.source_column  # `predict --input test.en`: one source a line

    def load(self, mode: str, predict_input: str | None = None) -> dict:
        d = self.cfg.data
        raw = super().load(mode, predict_input)
        self.specs = {"train": d.train, "eval": d.eval if d.eval is not None else d.train,
                      "predict": predict_input}
        return {name: self.pairs(ds, name) for name, ds in raw.items()}

    def check(self, ds, key: str, spec) -> None:
        split = "predict" if key == "predict" else "train"
        cols = set(ds.column_names) - {io.LINE}
        for col in required_columns(self.cfg, cols, split):
            if col not in cols:
                where = "--input" if split == "predict" else key
                hint = (f"; prediction rows need a '{col}' field, 'source', or a '{TRANSLATION}' dict"
                        if split == "predict" else "")
                raise DataError(f"{where}: {spec}: no column '{col}' (found: {', '.join(sorted(cols))}){hint}")

    def pairs(self, ds, split: str):
        """A dataset of plain (source, target, _line) rows; empty pairs skipped and counted."""
        spec = self.specs.get(split)
        key = "--input" if split == "predict" else f"data.{split}"
        cols = set(ds.column_names) - {io.LINE}
        src, tgt, translation = _layout(self.cfg, cols, "predict" if split == "predict" else split)
        has_target = translation or (tgt is not None and tgt in cols)
        lines = io.values(ds, io.LINE)
        if translation:
            sources, targets = [], []
            for row, line in zip(io.values(ds, TRANSLATION), lines):
                if not isinstance(row, dict):
                    raise DataError(f"{_where(spec, line)}: '{TRANSLATION}' must be a mapping "
                                    f"like {{{src}: ..., {tgt}: ...}}, got {type(row).__name__}")
                for lang in (src, tgt) if split != "predict" else (src,):
                    if lang not in row or row[lang] is None:
                        found = ", ".join(k for k, v in row.items() if v is not None)
                        raise DataError(f"{_where(spec, line)}: '{TRANSLATION}' has no language "
                                        f"'{lang}' (found: {found})")
                sources.append(_text(row[src], spec, line, f"{TRANSLATION}.{src}"))
                targets.append(_text(row.get(tgt), spec, line, f"{TRANSLATION}.{tgt}"))
        else:
            sources = [_text(v, spec, ln, src) for v, ln in zip(io.values(ds, src), lines)]
            targets = ([_text(v, spec, ln, tgt) for v, ln in zip(io.values(ds, tgt), lines)] if has_target
                       else [None] * len(sources))
        if split == "predict":  # one output per input row, in order: never skip
            empty = [ln for s, ln in zip(sources, lines) if not (s or "").strip()]
            if empty:
                log.warning("%s: %d rows with an empty source (first: line %s); predicting anyway",
                            key, len(empty), empty[0])
            return _table({"source": [s or "" for s in sources],
                           "target": targets, io.LINE: lines})
        keep, skipped = [], []
        for i, (s, t) in enumerate(zip(sources, targets)):
            if not (s or "").strip() or not (t or "").strip():
                skipped.append(i)
            else:
                keep.append(i)
        if skipped:
            shown = ", ".join(str(lines[i]) for i in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
            log.warning("%s: skipped %d of %d pairs with an empty source or target (%s)", key, len(skipped),
                        len(sources), _where(spec, shown, "lines"))
        if not keep:
            raise DataError(f"{key}: {spec}: every pair has an empty source or target")
        self.stats[split] = {"rows": len(sources), "skipped_empty": len(skipped)}
        return _table({"source": [sources[i] for i in keep],
                       "target": [targets[i] for i in keep],
                       io.LINE: [lines[i] for i in keep]})

    # -- encoding ------------------------------------------------------------
    def texts_for_tokenizer(self, ds):
        for s, t in zip(io.values(ds, "source"), io.values(ds, "target")):
            yield s
            if t:
                yield t

    def setup(self, splits: dict, tokenizer) -> None:
        """Multilingual tokenizers (mBART, NLLB, M2M) take the language codes when they know them."""
        d = self.cfg.data
        vocab = tokenizer.get_vocab()
        for attr, lang in (("src_lang", d.source_lang), ("tgt_lang", d.target_lang)):
            if lang and hasattr(tokenizer, attr) and lang in vocab:
                setattr(tokenizer, attr, lang)

    def encode(self, ds, tokenizer, split: str):
        d = self.cfg.data
        key = "--input" if split == "predict" else f"data.{split}"
        raw_sources = io.values(ds, "source")
        sources = [d.source_prefix + s for s in raw_sources]
        columns = {}
        ids, n_cut = _tokenize(tokenizer, sources, d.max_source_length, target=False)
        src_cut = n_cut
        columns["input_ids"] = ids  # no attention_mask column: all ones, built by the collator from lengths
        msg = [f"{n_cut} of {len(ids)} sources to data.max_source_length={d.max_source_length}"]
        targets = io.values(ds, "target")
        has_target = any(t is not None for t in targets)
        if has_target:
            labels, t_cut = _tokenize(tokenizer, [t or "" for t in targets], d.max_target_length, target=True)
            columns["labels"] = labels
            msg.append(f"{t_cut} of {len(labels)} targets to data.max_target_length={d.max_target_length}")
            n_cut += t_cut
        self.stats.setdefault(split, {"rows": len(ids)}).update(truncated_sources=src_cut,
                                                                truncated_targets=n_cut - src_cut)
        if n_cut:
            log.warning("%s: truncated %s tokens", key, " and ".join(msg))
        columns[SOURCE_TEXT] = raw_sources
        columns[TARGET_TEXT] = [t or "" for t in targets] if has_target else [""] * len(sources)
        return _table(columns)

    # -- metrics -------------------------------------------------------------
    def generation_metrics(self, predictions: list[str], references: list[str], gen_lengths=None) -> dict:
        return generation_metrics(predictions, references, gen_lengths)


def _tokenize(tokenizer, texts: list[str], max_length: int, target: bool) -> tuple[list, int]:
    """Token ids truncated to `max_length` (special tokens included), and how many were cut.

    Tokenizing to max_length + 1 first shows which rows are too long without a second full pass.
    """
    kw = {"text_target": texts} if target else {"text": texts}
    ids = tokenizer(**kw, truncation=True, max_length=max_length + 1, return_attention_mask=False)["input_ids"]
    long_rows = [i for i, x in enumerate(ids) if len(x) > max_length]
    if long_rows:
        kw = {"text_target": [texts[i] for i in long_rows]} if target else {"text": [texts[i] for i in long_rows]}
        cut = tokenizer(**kw, truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
        for i, x in zip(long_rows, cut):
            ids[i] = x
    return ids, len(long_rows)
