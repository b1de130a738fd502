"""Reading raw records from files or hub datasets, with errors that name file, line and field.

Every reader returns a `datasets.Dataset` with an extra `_line` column: the 1-based line (or row)
of each record in its source file, so that later checks can point at the exact place.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from typing import Any

from .errors import DataError

TABULAR = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet",
           ".txt": "text"}
LINE = "_line"


def file_kind(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    return TABULAR.get(ext)


def resolve_model(name: str | None) -> str | None:
    """`package:<module>[/<subdir>]` names a model shipped inside an installed Python package (found
    without importing it: a package's __init__ may import what we do not install)."""
    if not name or not name.startswith("package:"):
        return os.path.expanduser(name) if name and name.startswith("~") else name
    module, _, sub = name[len("package:"):].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"model: package '{module}' is not installed (pip install {module.replace('_', '-')})")
    root = list(spec.submodule_search_locations)[0]
    path = os.path.join(root, sub) if sub.strip("/") else root
    if not os.path.isdir(path):
        raise DataError(f"model: {name}: no directory {sub!r} inside package {module}")
    return path


def model_path(model) -> str | None:
    """The config's `model:` section as from_pretrained takes it: a package's folder resolved, a GGUF
    file (model.gguf_file) converted once into an ordinary model folder (tasks/gguf_model.py)."""
    name = resolve_model(model.name_or_path)
    if name and getattr(model, "gguf_file", None):
        from . import gguf_model

        return gguf_model.converted(gguf_model.locate(name, model.gguf_file, model.revision))
    return name


def is_local(spec: Any) -> bool:
    """A string that names a file on disk (or looks like one) rather than a hub dataset."""
    if isinstance(spec, dict):
        return "hub" not in spec
    return isinstance(spec, str) and (os.path.exists(spec) or file_kind(spec) is not None
                                      or spec.startswith((".", "/", "~")))


def check_exists(spec: Any, key: str) -> None:
    if isinstance(spec, dict) and "hub" not in spec:
        if not spec:
            raise DataError(f"{key}: an empty mapping; give a file path or {{source: FILE, target: FILE}}")
        for side, p in spec.items():
            if not isinstance(side, str) or not isinstance(p, str):
                raise DataError(f"{key}.{side}: expected a file path for each side of aligned text files, "
                                f"got {p!r}")
            check_exists(p, f"{key}.{side}")
        return
    if is_local(spec) and os.path.isdir(os.path.expanduser(spec)):
        raise DataError(f"{key}: {spec} is a directory; give a data file (csv, tsv, json, jsonl, parquet, txt)")
    if is_local(spec) and not os.path.isfile(os.path.expanduser(spec)):
        where = "" if os.path.isabs(os.path.expanduser(spec)) else \
            f" (a relative path is looked for in the current directory, {os.getcwd()}, and in the config file's)"
        raise DataError(f"{key}: file not found: {spec}{where}")
    if is_local(spec):
        try:  # found but unreadable (permissions): one line now, not a traceback once the task reads it
            with open(os.path.expanduser(spec), "rb"):
                pass
        except OSError as exc:
            raise DataError(f"{key}: {spec}: cannot be read ({exc.strerror or exc})") from None


def _decode_error(path: str, exc: UnicodeDecodeError, text: bytes | None = None) -> DataError:
    line = (text[: exc.start].count(b"\n") + 1) if text is not None else "?"
    return DataError(f"{path}: line {line}: not UTF-8 text ({exc.reason}); re-save the file as UTF-8")


def _read_text(path: str) -> str:
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc, raw) from None


def _lines(text: str) -> list[str]:
    """Lines as an editor counts them: str.splitlines() would also split inside text at U+2028,
    U+0085, form feeds and the like, which JSON strings and CSV fields may hold."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def write_jsonl(path: str, rows) -> str:
    """One JSON object a line, written to a temporary file and renamed into place: a reader never
    sees a half-written file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)
    return path


def _json_problem(exc: json.JSONDecodeError) -> str:
    return exc.msg.removesuffix(" at")  # "Unterminated string starting at" expects the position after it


def _first_sentence(exc: Exception) -> str:
    return str(exc).split(";")[0].strip() or type(exc).__name__


def read_jsonl(path: str, limit: int | None = None) -> list[dict]:
    rows = []
    for n, line in enumerate(_lines(_read_text(path)), 1):
        if limit is not None and len(rows) >= limit:
            break
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {n}: malformed JSON at column {exc.colno} ({_json_problem(exc)})") from None
        except RecursionError:
            raise DataError(f"{path}: line {n}: JSON nested too deeply") from None
        except ValueError as exc:  # a number of more than 4300 digits (Python's int conversion limit)
            raise DataError(f"{path}: line {n}: unreadable JSON value ({_first_sentence(exc)})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {n}: expected a JSON object, got {type(obj).__name__}")
        obj[LINE] = n
        rows.append(obj)
    return rows


def read_json(path: str) -> list[dict]:
    text = _read_text(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON Lines saved with a .json name
            return read_jsonl(path)
        raise DataError(f"{path}: line {exc.lineno}: malformed JSON at column {exc.colno} "
                        f"({_json_problem(exc)})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply") from None
    except ValueError as exc:
        raise DataError(f"{path}: unreadable JSON value ({_first_sentence(exc)})") from None
    if isinstance(obj, dict) and "data" in obj and isinstance(obj["data"], list):
        obj = obj["data"]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataError(f"{path}: expected a JSON list of objects (or JSON Lines)")
    return [dict(r, **{LINE: i + 1}) for i, r in enumerate(obj)]


def read_delimited(path: str, delimiter: str) -> list[dict]:
    reader = _csv_reader(_read_text(path), delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file (expected a header line)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: line 1: malformed header ({exc})") from None
    header = [h.strip() for h in header]
    twice = [h for i, h in enumerate(header) if h in header[:i]]
    if twice:
        raise DataError(f"{path}: line 1: column {twice[0]!r} appears twice in the header")
    rows = []
    while True:
        start = reader.line_num + 1  # the row's first line (a quoted field may run over several)
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"{path}: line {start}: malformed row ({exc})") from None
        n = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header) and n > start and "\n" in fields[-1]:
            raise DataError(f"{path}: line {start}: a quote opened on this line is not closed (the field runs "
                            f"to line {n}); close it, or double a quote inside a quoted field (\"\")")
        if len(fields) != len(header):
            raise DataError(f"{path}: line {n}: expected {len(header)} fields ({', '.join(header)}), "
                            f"found {len(fields)}")
        row = dict(zip(header, fields))
        row[LINE] = n
        rows.append(row)
    return rows


def _csv_reader(text: str, delimiter: str):
    import io as stdio

    # newline="": quoted fields keep their line breaks, and line_num counts physical lines
    return csv.reader(stdio.StringIO(text, newline=""), delimiter=delimiter,
                      quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)


def _read_parquet(path: str, how: str):
    """pyarrow.parquet's `how` (read_table or read_schema) of `path`; a file that is not Parquet, or
    is truncated or damaged, is a DataError naming it instead of pyarrow's traceback."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return getattr(pq, how)(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = detail.split(f"'{path}': ", 1)[-1]  # pyarrow's "Could not open Parquet input source '<path>': "
        raise DataError(f"{path}: not a readable Parquet file ({detail[:200]}); is it truncated, or another "
                        "format saved as .parquet?") from None


def read_lines(path: str) -> list[str]:
    """Plain text, one item a line (parallel MT corpora). Keeps empty lines to preserve alignment.
    Line ends as Python's text files read them (\n, \r\n and a lone \r), as sacrebleu and fairseq do."""
    lines = _lines(_read_text(path))
    if lines[-1] == "":  # the end of the last line, not an empty line after it
        lines.pop()
    return lines


def is_plain_text(path: str) -> bool:
    """A .txt file, or a file with no table extension (test.en, newstest.de): one item a line."""
    kind = file_kind(path)
    return kind == "text" or (kind is None and os.path.isfile(os.path.expanduser(path)))


def load_lines(path: str, key: str, column: str):
    """Every line of a plain text file as one row of `column`, empty lines included, so that row n
    of a prediction file answers line n of the input."""
    check_exists(path, key)
    lines = read_lines(os.path.expanduser(path))
    if not lines:
        raise DataError(f"{key}: {path} holds no lines")
    return _dataset([{column: t, LINE: i + 1} for i, t in enumerate(lines)], path, key)


def read_parallel(spec: dict, key: str) -> list[dict]:
    sides = {side: read_lines(p) for side, p in spec.items()}
    counts = {side: len(v) for side, v in sides.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{spec[s]} has {c} lines" for s, c in counts.items())
        raise DataError(f"{key}: parallel files are misaligned: {detail}")
    names = list(sides)
    return [dict({s: sides[s][i] for s in names}, **{LINE: i + 1}) for i in range(counts[names[0]])]


def read_records(spec: Any, key: str = "data") -> list[dict]:
    """Records from a local file, a {side: file} pair of aligned text files, or raise."""
    check_exists(spec, key)
    if isinstance(spec, dict):
        return read_parallel(spec, key)
    path = os.path.expanduser(spec)
    kind = file_kind(path)
    if kind == "jsonl":
        rows = read_jsonl(path)
    elif kind == "json":
        rows = read_json(path)
    elif kind in ("csv", "tsv"):
        rows = read_delimited(path, "\t" if kind == "tsv" else ",")
    elif kind == "parquet":
        rows = [dict(r, **{LINE: i + 1}) for i, r in enumerate(_read_parquet(path, "read_table").to_pylist())]
    elif kind == "text":
        rows = [{"text": t, LINE: i + 1} for i, t in enumerate(read_lines(path)) if t.strip()]
    else:
        raise DataError(f"{key}: unsupported file type '{os.path.splitext(path)[1]}' for {spec} "
                        f"(use csv, tsv, json, jsonl, parquet or txt)")
    if not rows:
        raise DataError(f"{key}: {spec} holds no records")
    return rows


def load_split(spec: Any, key: str, split: str):
    """A `datasets.Dataset` from a local spec or a hub dataset (`name`, `name:split`, or
    `{hub: name, name: subset, split: split}`)."""
    import datasets

    if is_local(spec):
        return _dataset(read_records(spec, key), spec, key)
    if isinstance(spec, str):
        name, _, hub_split = spec.partition(":")
        kwargs = {"path": name, "split": hub_split or split}
    else:
        kwargs = {"path": spec["hub"], "name": spec.get("name"), "split": spec.get("split", split)}
    try:
        ds = datasets.load_dataset(**kwargs)
    except Exception as exc:  # hub errors come in many types; report them as one line
        raise DataError(f"{key}: could not load dataset {spec!r}: {str(exc).splitlines()[0]}") from None
    ds = ds.add_column(LINE, list(range(1, len(ds) + 1)))
    if len(ds) == 0:
        raise DataError(f"{key}: {spec} split '{kwargs['split']}' is empty")
    return ds


def compact(ds):
    """`ds` with a pending select/split index mapping applied once, by Arrow's take (C++): datasets
    otherwise gathers the mapping row by row on every column read (0.16 s a column at 66k rows)."""
    indices = getattr(ds, "_indices", None)
    table = getattr(getattr(ds, "data", None), "table", None)
    if indices is None or table is None:  # nothing pending, or a datasets whose internals moved
        return ds
    import datasets

    return datasets.Dataset(table.take(indices.column(0)), info=ds.info.copy())


def values(ds, column: str) -> list:
    """Every value of one column of a `datasets.Dataset`, read in one go. (`ds[column]` is a lazy
    column in datasets >= 4: iterating it or indexing it reads the table one row at a time.)"""
    return ds[column][:]


def row_batches(ds, batch_size: int = 1000):
    """Lists of the rows of a `datasets.Dataset` (dicts, as `for row in ds` gives them), read a batch
    at a time."""
    for batch in ds.iter(batch_size=batch_size):
        names = list(batch)
        yield [dict(zip(names, vals)) for vals in zip(*(batch[n] for n in names))]


def iter_rows(ds, batch_size: int = 1000):
    """The rows of a `datasets.Dataset` as `for row in ds` gives them, read a batch at a time."""
    for rows in row_batches(ds, batch_size):
        yield from rows


def _kind(v) -> str:
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    return {str: "text", list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _bad_text(v) -> bool:
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(v, list):
        return any(_bad_text(x) for x in v)
    if isinstance(v, dict):
        return any(_bad_text(x) for x in v.values()) or any(_bad_text(k) for k in v)
    return False


def _dataset(rows: list[dict], spec: Any, key: str):
    """datasets.Dataset from records; what Arrow refuses is reported with its file, line and field."""
    import datasets
    import pyarrow as pa

    # every field of any record is a column (None where a record lacks it); Dataset.from_list would
    # take the first record's fields only and silently drop a field that first appears later
    columns = list(dict.fromkeys(k for row in rows for k in row))
    try:
        return datasets.Dataset.from_dict({c: [row.get(c) for row in rows] for c in columns})
    except (pa.ArrowException, UnicodeEncodeError, OverflowError, TypeError, ValueError) as exc:
        where = spec if isinstance(spec, str) else key
        first = {}
        for row in rows:
            n = row.get(LINE, "?")
            for col, v in row.items():
                if _bad_text(v):
                    raise DataError(f"{where}: line {n}: field '{col}' holds a lone surrogate escape "
                                    "(\\ud800-\\udfff), not valid Unicode text") from None
                if v is None or col == LINE:
                    continue
                if col not in first:
                    first[col] = (_kind(v), n)
                elif _kind(v) != first[col][0]:
                    raise DataError(f"{where}: line {n}: field '{col}' is {_kind(v)} here but {first[col][0]} "
                                    f"on line {first[col][1]}; use one type per field") from None
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{where}: the records do not form a table ({detail})") from None


def peek_columns(spec: Any, key: str) -> set[str] | None:
    """Column names of a local file, read from its header or first records; None for hub data."""
    if not is_local(spec):
        return None
    if isinstance(spec, dict):
        return set(spec)
    path = os.path.expanduser(spec)
    kind = file_kind(path)
    if kind in ("csv", "tsv"):  # the header as read_delimited reads it (quoted names included)
        text = _read_text(path)
        try:
            header = next(_csv_reader(text, "\t" if kind == "tsv" else ","), [])
        except csv.Error as exc:
            raise DataError(f"{path}: line 1: malformed header ({exc})") from None
        if not header:
            raise DataError(f"{path}: " + ("empty file (expected a header line)" if not text.strip()
                                           else "line 1: empty (expected the header line)"))
        return {h.strip() for h in header}
    if kind == "parquet":
        return set(_read_parquet(path, "read_schema").names)
    # the first records show the columns; the whole file is parsed once, when the task loads it
    rows = read_jsonl(path, limit=100) if kind == "jsonl" else read_records(spec, key)
    if not rows:
        raise DataError(f"{key}: {spec} holds no records")
    cols = set()
    for r in rows[:100]:
        cols.update(r)
    cols.discard(LINE)
    return cols
