"""A GGUF file (llama.cpp's format) as a model source: `model: {name_or_path: DIR | REPO | package:MOD,
gguf_file: NAME.gguf}`.

transformers reads a GGUF file by dequantizing it to a float model (~20 s for a 135M model on a CPU)
and marks the result as "quantized with gguf", which save_pretrained refuses. So the file is converted
once into an ordinary model folder (safetensors, config without the gguf marker, tokenizer files,
generation config) in a cache, and every loader -- model, tokenizer, merge, eval, predict -- reads that
folder with plain `from_pretrained`: a run's saved model and tokenizer are ordinary ones too.

Cache: $TRAINSUITE_MODEL_CACHE, else $XDG_CACHE_HOME/trainsuite/models (~/.cache/trainsuite/models).
An entry is keyed by the file's identity (real path, size, modification time), the transformers version
and CONVERSION below; it is written into a temporary folder and renamed into place, so a reader never
sees half an entry. Delete the folder to reclaim the space.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile

from .errors import DataError

log = logging.getLogger("trainsuite")

CONVERSION = 1  # bump when the conversion below writes something different
ENV = "TRAINSUITE_MODEL_CACHE"
DONE = "gguf_source.json"  # written last into an entry: where it came from


def cache_root() -> str:
    if os.environ.get(ENV):
        return os.path.abspath(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "trainsuite", "models")


def locate(folder_or_repo: str, gguf_file: str, revision: str | None = None) -> str:
    """The GGUF file's local path: inside a local folder, or downloaded from (or found in the cache of)
    a hub repo."""
    if os.path.isdir(folder_or_repo):
        path = os.path.join(folder_or_repo, gguf_file)
        if not os.path.isfile(path):
            raise DataError(f"model.gguf_file: {gguf_file} not found in {folder_or_repo}")
        return path
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(folder_or_repo, gguf_file, revision=revision)
    except Exception as exc:  # noqa: BLE001 - offline, no such repo or file: one line naming them
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"model.gguf_file: {gguf_file} from {folder_or_repo} could not be loaded: {first}") from None


def _entry(path: str) -> str:
    import transformers

    st = os.stat(path)
    ident = json.dumps([os.path.realpath(path), st.st_size, st.st_mtime_ns, transformers.__version__, CONVERSION])
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(cache_root(), f"{stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}")


def cached(path: str) -> str | None:
    """The converted folder of the GGUF file at `path`, if there is one already."""
    entry = _entry(path)
    return entry if os.path.isfile(os.path.join(entry, DONE)) else None


def model_type(folder: str, gguf_file: str) -> str | None:
    """The transformers model_type of a local GGUF file, without converting it: the converted config's,
    else the file's architecture (llama.cpp names the architectures transformers reads as their model
    types: llama, qwen2, falcon ...). None when the file is not there (a hub repo)."""
    path = os.path.join(folder, gguf_file)
    if not os.path.isfile(path):
        return None
    entry = cached(path)
    if entry:
        with open(os.path.join(entry, "config.json"), encoding="utf-8") as fh:
            return json.load(fh).get("model_type")
    return architecture(path).replace("-", "_")


@functools.lru_cache(maxsize=8)
def _architecture(path: str, size: int, mtime_ns: int) -> str:
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).fields.get("general.architecture")
    except Exception as exc:  # noqa: BLE001 - not a GGUF file, truncated: say which
        raise DataError(f"model.gguf_file: {path} is not a readable GGUF file ({exc})") from None
    if field is None:
        raise DataError(f"model.gguf_file: {path} names no architecture (general.architecture)")
    return bytes(field.parts[field.data[0]]).decode()


def architecture(path: str) -> str:
    """The file's `general.architecture`, from its header (the gguf package's reader maps the file and
    reads no tensor, but parses the whole vocabulary: ~2 s, so read once per file and process)."""
    st = os.stat(path)
    return _architecture(path, st.st_size, st.st_mtime_ns)


def readable_architectures() -> set[str]:
    """The GGUF architectures this transformers version loads: its newer loader's and its legacy one's."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}  # sections of the mapping, not models
    try:
        from transformers.integrations.gguf.utils import GGUF_ARCHS

        names |= set(GGUF_ARCHS)
    except ImportError:  # an older transformers has the legacy loader only
        pass
    return names


def _spellings(arch: str) -> set[str]:
    # llama.cpp writes some names differently from transformers' tables (qwen2moe, gpt-oss, t5encoder)
    under = arch.replace("-", "_")
    return {arch, under, under.replace("moe", "_moe"), arch.replace("encoder", "")}


def check_readable(path: str) -> str:
    """The architecture, or exit 2 naming it when transformers cannot read it."""
    arch = architecture(path)
    if not _spellings(arch) & readable_architectures():
        raise DataError(f"model.gguf_file: {os.path.basename(path)} is a GGUF of architecture '{arch}', which "
                        f"transformers cannot read (it reads: {', '.join(sorted(readable_architectures()))})")
    return arch


def converted(path: str) -> str:
    """The folder of the model converted from the GGUF file at `path`, converting it on the first use."""
    found = cached(path)
    if found:
        return found
    arch = check_readable(path)
    entry = _entry(path)
    log.info("converting %s (GGUF, %s) to a model folder in %s; later runs load it from there",
             os.path.basename(path), arch, entry)
    os.makedirs(os.path.dirname(entry), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(entry))
    try:
        _convert(path, arch, tmp)
        try:
            os.rename(tmp, entry)  # whole or not at all; a concurrent converter's entry wins
        except OSError:
            if not cached(path):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def _convert(path: str, arch: str, out: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    folder, name = os.path.split(path)
    auto = AutoModelForSeq2SeqLM if "t5" in arch else AutoModelForCausalLM
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = auto.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"model.gguf_file: {name} could not be converted: {first}") from None
    # the weights are dequantized floats now; the gguf marker would only make save_pretrained refuse
    # ("quantized with gguf, not serializable") and from_pretrained look for a GGUF file again
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    with open(os.path.join(out, DONE), "w", encoding="utf-8") as fh:
        json.dump({"gguf_file": os.path.realpath(path), "architecture": arch, "conversion": CONVERSION}, fh, indent=1)
    _readable_by_all(out)


def _readable_by_all(folder: str) -> None:
    """mkdtemp makes 0700 and safetensors writes 0600: a cache shared by users reads like any other folder."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~mask)
