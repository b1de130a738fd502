"""What a checkpoint held when it was saved: each file's size and SHA-256, checked before a resume.

checkpoints.py renames a checkpoint into place only when it is whole, but its files can still be
damaged afterwards: a disk that lost the last writes at a power cut, a copy cut short, a file edited
or deleted by hand. MANIFEST_FILE, the last file a checkpoint gets (written atomically), lists every
other file with its size and SHA-256; `problem()` names the first file that differs, before anything
is loaded from it. A checkpoint saved before manifests existed has none and is taken as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

MANIFEST_FILE = "trainsuite_manifest.json"


def _files(checkpoint_dir: str) -> list[str]:
    """Every regular file under checkpoint_dir (sharded engines write subfolders), relative, sorted."""
    out = []
    for root, _, names in os.walk(checkpoint_dir):
        for n in names:
            path = os.path.join(root, n)
            if os.path.isfile(path) and not os.path.islink(path):
                out.append(os.path.relpath(path, checkpoint_dir))
    return sorted(r for r in out if r != MANIFEST_FILE and not r.endswith(".tmp"))


def _sha256(path: str) -> str:
    digest, buf = hashlib.sha256(), bytearray(1 << 22)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def _sha256_all(paths: list[str]) -> list[str]:
    """Hashes of several files at once (hashlib releases the GIL): model shards and optimizer state
    of a large checkpoint hash side by side, at about 1-2 GB/s each."""
    if len(paths) < 2:
        return [_sha256(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, len(paths))) as pool:
        return list(pool.map(_sha256, paths))


def write(checkpoint_dir: str) -> None:
    """Record every file of a checkpoint that is complete (called by the process that saves it)."""
    rels = _files(checkpoint_dir)
    paths = [os.path.join(checkpoint_dir, r) for r in rels]
    files = {rel: {"size": os.path.getsize(path), "sha256": digest}
             for rel, path, digest in zip(rels, paths, _sha256_all(paths))}
    target = os.path.join(checkpoint_dir, MANIFEST_FILE)
    with open(target + ".tmp", "w") as fh:
        json.dump({"files": files}, fh, indent=1, sort_keys=True)
    os.replace(target + ".tmp", target)


def problem(checkpoint_dir: str) -> str | None:
    """None when every file matches the manifest (or there is no manifest); else what is wrong, naming
    the file. Sizes are compared first, for all files: a cut-off file is found without hashing."""
    path = os.path.join(checkpoint_dir, MANIFEST_FILE)
    if not os.path.exists(path):
        return None  # saved before manifests, or by another tool
    try:
        with open(path) as fh:
            files = json.load(fh)["files"]
        expected = {rel: (int(v["size"]), str(v["sha256"])) for rel, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{path} is unreadable"
    for rel, (size, _) in expected.items():
        file = os.path.join(checkpoint_dir, rel)
        if not os.path.isfile(file):
            return f"{file} is missing"
        actual = os.path.getsize(file)
        if actual != size:
            return f"{file} has {actual:,} bytes, {size:,} when saved"
    paths = [os.path.join(checkpoint_dir, rel) for rel in expected]
    for file, (_, digest), actual in zip(paths, expected.values(), _sha256_all(paths)):
        if actual != digest:
            return f"{file} differs from the file saved (SHA-256)"
    return None
