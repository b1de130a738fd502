"""Prepared (encoded) splits kept between runs: a second run on the same data, tokenizer and task
settings loads them instead of encoding again, and says so in its log.

The key is a SHA-256 of
- the split's rows as loaded (the Arrow table and any row selection: the data files' content, the
  hold-out split, max_*_samples),
- the tokenizer (its serialized vocabulary and rules, special tokens, chat template, language codes),
- the task settings (task, data, sft and model sections of the config, the labels and format the task
  fitted) and the source of the task's code (an edited task encodes differently).
Any change gives another key; nothing is ever invalidated in place. Entries are folders
<root>/<key>/ holding the encoded dataset (datasets' save_to_disk), what the task keeps beside it
(eval texts, generation prompts, counts) and the log lines the encoding wrote, which are replayed.

A tokenizer trained from data (tokenizer.train_from_data) is kept there too, keyed by the training
split's rows, the tokenizer settings, the special tokens and the code that trains it: tokenizers'
WordPiece and Unigram trainers give another vocabulary at every training (hash order in Rust), so
without it two identical runs would number tokens differently, and the second could never reuse
the prepared data. A run with the same inputs loads the earlier tokenizer and says so.
Where: data.prepared_cache: true (the default) puts them in $TRAINSUITE_CACHE, else
$XDG_CACHE_HOME/trainsuite/prepared (~/.cache/trainsuite/prepared); a path puts them there; false
turns the cache off. Delete the folder to reclaim the space. Predict inputs are never cached.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import pickle
import shutil
import tempfile

log = logging.getLogger("trainsuite")

VERSION = 1
# what a task's encode() leaves on the task besides the dataset; dicts are kept per split
SIDE_STATE = ("eval_texts", "eval_order")
SIDE_STATE_PER_SPLIT = ("stats", "generation_rows")
FITTED = ("problem_type", "labels", "format", "loss_on")
CACHED_SPLITS = ("train", "eval")


def cache_root(cfg) -> str | None:
    setting = cfg.data.prepared_cache
    if setting is False or setting is None:
        return None
    if isinstance(setting, str):
        return os.path.abspath(os.path.expanduser(setting))
    if os.environ.get("TRAINSUITE_CACHE"):
        return os.path.abspath(os.environ["TRAINSUITE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "trainsuite", "prepared")


def _update_with_table(h, table) -> None:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    h.update(sink.getvalue())


def data_digest(ds) -> str:
    """The rows of a datasets.Dataset as loaded: its table and its row selection."""
    h = hashlib.sha256()
    _update_with_table(h, ds.data.table if hasattr(ds.data, "table") else ds.data)
    if getattr(ds, "_indices", None) is not None:
        h.update(b"indices")
        _update_with_table(h, ds._indices.table if hasattr(ds._indices, "table") else ds._indices)
    return h.hexdigest()


def tokenizer_digest(tokenizer) -> str:
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # a slow tokenizer: its vocabulary
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    extra = {"class": type(tokenizer).__name__, "special": tokenizer.special_tokens_map,
             "added": sorted(tokenizer.get_added_vocab().items()), "chat_template": tokenizer.chat_template,
             "padding_side": tokenizer.padding_side, "truncation_side": tokenizer.truncation_side,
             "model_max_length": tokenizer.model_max_length,
             "langs": [getattr(tokenizer, a, None) for a in ("src_lang", "tgt_lang")]}
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def settings_digest(cfg, task) -> str:
    conf = cfg.to_dict()
    settings = {k: conf.get(k) for k in ("task", "data", "sft", "model")}
    settings["data"] = {k: v for k, v in settings["data"].items() if k != "prepared_cache"}
    settings["fitted"] = {k: getattr(task, k, None) for k in FITTED}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for src in _task_sources(task):
        h.update(src.encode())
    return h.hexdigest()


def _task_sources(task) -> list[str]:
    """The source of every tasks/ module the task's class comes from (an edited task encodes differently)."""
    return [inspect.getsource(inspect.getmodule(c)) for c in type(task).__mro__ if c.__module__.startswith("tasks.")]


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append((record.levelno, record.getMessage()))


def _side_state(task, split) -> dict:
    # eval_texts and eval_order describe the eval split alone
    out = {a: getattr(task, a) for a in SIDE_STATE if hasattr(task, a) and split == "eval"}
    for a in SIDE_STATE_PER_SPLIT:
        value = getattr(task, a, None)
        if isinstance(value, dict) and split in value:
            out[a] = {split: value[split]}
    return out


def _restore_side_state(task, state: dict) -> None:
    for a, v in state.items():
        if a in SIDE_STATE_PER_SPLIT:
            getattr(task, a).update(v)
        else:
            setattr(task, a, v)


def encode_split(cfg, task, tokenizer, ds, split: str, settings: str | None = None, tok: str | None = None):
    """task.encode(ds, tokenizer, split), through the cache when it is on and the split is cacheable."""
    root = cache_root(cfg)
    if root is None or split not in CACHED_SPLITS:
        return task.encode(ds, tokenizer, split)
    settings = settings or settings_digest(cfg, task)
    tok = tok or tokenizer_digest(tokenizer)
    key = hashlib.sha256(f"{VERSION}|{split}|{settings}|{tok}|{data_digest(ds)}".encode()).hexdigest()[:32]
    entry = os.path.join(root, key)
    loaded = _load(entry, task)
    if loaded is not None:
        log.info("data.%s: reused the prepared data from %s (same data, tokenizer and settings)", split, entry)
        return loaded
    recorder = _Recorder()
    log.addHandler(recorder)
    try:
        encoded = task.encode(ds, tokenizer, split)
    finally:
        log.removeHandler(recorder)
    if int(os.environ.get("RANK", "0")) == 0:
        _store(entry, encoded, {"side": _side_state(task, split), "log": recorder.records})
    return encoded


def encode_splits(cfg, task, tokenizer, splits: dict) -> dict:
    if cache_root(cfg) is None:
        return {name: task.encode(ds, tokenizer, name) for name, ds in splits.items()}
    settings, tok = settings_digest(cfg, task), tokenizer_digest(tokenizer)
    return {name: encode_split(cfg, task, tokenizer, ds, name, settings, tok) for name, ds in splits.items()}


def trained_tokenizer(cfg, task, ds, special, train):
    """`train()`'s tokenizer, or the one an earlier run trained on the same rows and settings. Both
    come back loaded from disk, so that the first run and the next see the same tokenizer object."""
    root = cache_root(cfg)
    if root is None:
        return train()
    from transformers import AutoTokenizer

    from . import tokenizer as tokenizer_code

    tc = cfg.tokenizer
    settings = {"task": cfg.task, "algorithm": tc.algorithm, "vocab_size": tc.vocab_size,
                "lowercase": tc.lowercase, "special": repr(special),
                "data": {k: v for k, v in cfg.to_dict()["data"].items() if k != "prepared_cache"}}
    sources = [inspect.getsource(tokenizer_code)] + _task_sources(task)
    h = hashlib.sha256(f"{VERSION}|tokenizer|{json.dumps(settings, sort_keys=True, default=str)}|".encode())
    for src in sources:
        h.update(src.encode())
    h.update(data_digest(ds).encode())
    entry = os.path.join(root, "tokenizer-" + h.hexdigest()[:32])
    if os.path.isfile(os.path.join(entry, "tokenizer_config.json")):
        try:
            tok = AutoTokenizer.from_pretrained(entry)
            log.info("tokenizer: reused the one trained on these data by an earlier run (%s)", entry)
            return tok
        except (OSError, ValueError) as exc:  # a damaged entry: train again, and replace it
            log.warning("prepared-data cache: cannot read %s (%s); training the tokenizer again", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
    tok = train()
    return AutoTokenizer.from_pretrained(entry) if _publish(entry, tok.save_pretrained) else tok


def _load(entry: str, task):
    if not os.path.isfile(os.path.join(entry, "state.pkl")):
        return None
    import datasets

    try:
        with open(os.path.join(entry, "state.pkl"), "rb") as fh:
            state = pickle.load(fh)
        encoded = datasets.load_from_disk(os.path.join(entry, "dataset"), keep_in_memory=True)
    except Exception as exc:  # noqa: BLE001 - a damaged entry: encode again, and replace it
        log.warning("prepared-data cache: cannot read %s (%s); preparing the data again", entry, exc)
        return None
    _restore_side_state(task, state["side"])
    for level, message in state["log"]:
        log.log(level, "%s", message)
    return encoded


def _store(entry: str, encoded, state: dict) -> None:
    def write(tmp):
        encoded.save_to_disk(os.path.join(tmp, "dataset"))
        with open(os.path.join(tmp, "state.pkl"), "wb") as fh:
            pickle.dump(state, fh)

    _publish(entry, write)


def _publish(entry: str, write) -> bool:
    """`write(folder)` into a temporary folder renamed to `entry`; whether `entry` now exists."""
    try:
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(entry))
        write(tmp)
        try:
            os.rename(tmp, entry)  # whole or not at all; a concurrent writer's entry wins
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        return os.path.isdir(entry)
    except OSError as exc:  # a cache that cannot be written costs time, never the run
        log.warning("prepared-data cache: cannot write %s (%s)", entry, exc)
        return False
