"""Prepared (encoded) splits kept between runs: a second run on the same data, tokenizer and task
settings loads them instead of encoding again, and says so in its log.

The key is a SHA-256 of
- the split's rows as loaded (the Arrow table and any row selection: the data files' content, the
  hold-out split, max_*_samples),
- the tokenizer (its serialized vocabulary and rules, special tokens, chat template, language codes),
- the task settings (task, data, sft and model sections of the config, the labels and format the task
  fitted) and the source of the task's code (an edited task encodes differently).
Any change gives another key; nothing is ever invalidated in place. Entries are folders
<root>/<key>/ holding the encoded dataset (datasets' save_to_disk: Arrow and JSON) and state.json:
what the task keeps beside it (eval texts, generation prompts, counts) and the log lines the
encoding wrote, which are replayed. Nothing read back is unpickled: cache folders are shared and
their names predictable, so a planted file must never run code. What state.json may set on the
task is limited to the names below, with the types checked. An entry that cannot be read (bad
JSON, a missing or truncated file) is prepared again and replaced, with one warning.

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
import shutil
import tempfile

log = logging.getLogger("trainsuite")

VERSION = 2  # 2: state.json instead of a pickle; entries of version 1 are never read
STATE_FILE = "state.json"
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")  # what a trained tokenizer's entry holds
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
    if cfg.task == "preference":  # its lengths and truncation shape the encoded pairs
        settings["preference"] = conf.get("preference")
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
    damaged = os.path.lexists(entry)  # an entry that is there but cannot be read is replaced
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
        _store(entry, encoded, {"side": _side_state(task, split), "log": recorder.records}, replace=damaged)
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
    damaged = os.path.lexists(entry)
    if damaged:
        try:
            for name in TOKENIZER_FILES:  # without its config, a tokenizer loads, but another one
                if not os.path.isfile(os.path.join(entry, name)):
                    raise OSError(f"no {name}")
            tok = AutoTokenizer.from_pretrained(entry)
            log.info("tokenizer: reused the one trained on these data by an earlier run (%s)", entry)
            return tok
        except Exception as exc:  # noqa: BLE001 - a damaged entry: train again, and replace it
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("prepared-data cache: cannot read %s (%s); training the tokenizer again and replacing it",
                        entry, detail[:200])
    tok = train()
    return AutoTokenizer.from_pretrained(entry) if _publish(entry, tok.save_pretrained, damaged) else tok


def _to_json(value):
    """`value` as JSON that `_from_json` turns back into an equal value of the same types: tuples,
    dicts with keys other than text, and numpy scalars would otherwise come back changed."""
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and "__tuple__" not in value and "__items__" not in value:
            return {k: _to_json(v) for k, v in value.items()}
        return {"__items__": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars and arrays
        return _to_json(value.tolist())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot keep a {type(value).__name__} in the prepared-data cache")


def _from_json(value):
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_json(v) for v in value["__tuple__"])
        if set(value) == {"__items__"}:
            return {_hashable(_from_json(k)): _from_json(v) for k, v in value["__items__"]}
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _hashable(key):
    if isinstance(key, (list, dict)):
        raise ValueError("a dict key that is not a scalar")
    return key


def _read_state(path: str) -> dict:
    """state.json, checked: only the known side-state names, log lines as (level, text)."""
    with open(path, encoding="utf-8") as fh:
        state = _from_json(json.load(fh))
    if not isinstance(state, dict) or not isinstance(state.get("side"), dict) or not isinstance(state.get("log"), list):
        raise ValueError("not a prepared-data state")
    for name, value in state["side"].items():
        if name not in SIDE_STATE + SIDE_STATE_PER_SPLIT:
            raise ValueError(f"unknown side state {name!r}")
        if name in SIDE_STATE_PER_SPLIT and not isinstance(value, dict):
            raise ValueError(f"side state {name!r} is not per split")
    for line in state["log"]:
        if not (isinstance(line, tuple) and len(line) == 2 and type(line[0]) is int and isinstance(line[1], str)):
            raise ValueError("a log line is not (level, text)")
    return state


def _load(entry: str, task):
    """The entry's dataset with the task's side state restored; None when there is no entry, or
    when it cannot be read (then it is prepared again and replaced: one warning, this run only)."""
    if not os.path.lexists(entry):
        return None
    import datasets

    try:
        state = _read_state(os.path.join(entry, STATE_FILE))
        if not all(hasattr(task, name) for name in state["side"]):
            raise ValueError(f"side state for another task ({', '.join(state['side'])})")
        encoded = datasets.Dataset.load_from_disk(os.path.join(entry, "dataset"), keep_in_memory=True)
    except Exception as exc:  # noqa: BLE001 - a damaged entry: encode again, and replace it
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("prepared-data cache: cannot read %s (%s); preparing the data again and replacing it",
                    entry, detail[:200])
        return None
    _restore_side_state(task, state["side"])
    for level, message in state["log"]:
        log.log(level, "%s", message)
    return encoded


def _store(entry: str, encoded, state: dict, replace: bool) -> None:
    def write(tmp):
        encoded.save_to_disk(os.path.join(tmp, "dataset"))
        with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as fh:
            json.dump(_to_json(state), fh)

    _publish(entry, write, replace)


def _publish(entry: str, write, replace: bool = False) -> bool:
    """`write(folder)` into a temporary folder renamed to `entry`; whether `entry` now exists.
    `replace`: `entry` is there but damaged; it gives way to the new one."""
    tmp = None
    try:
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(entry))
        write(tmp)
        if replace and os.path.lexists(entry):
            _discard(entry)
        try:
            os.rename(tmp, entry)  # whole or not at all; a concurrent writer's entry wins
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        return os.path.isdir(entry)
    except OSError as exc:  # a cache that cannot be written costs time, never the run
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        log.warning("prepared-data cache: cannot write %s (%s)", entry, exc)
        return False


def _discard(entry: str) -> None:
    """Remove `entry` (a folder, a file or a link) by renaming it aside first, so that no reader
    ever sees it half deleted."""
    aside = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(entry))
    try:
        os.rename(entry, os.path.join(aside, "entry"))
    except OSError:
        pass  # gone already (a concurrent run replaced it)
    shutil.rmtree(aside, ignore_errors=True)
