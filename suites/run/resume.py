"""`--resume` (the latest complete and intact checkpoint of output_dir) or `--resume PATH` -> a checkpoint
dir. Intact: its files match the sizes and hashes recorded when it was saved (checkpoint_manifest.py)."""

from __future__ import annotations

import logging
import os

from .. import checkpoint_manifest
from ..checkpoints import checkpoint_is_complete, latest_intact_checkpoint
from ..errors import UserError

log = logging.getLogger("trainsuite")


def resolve_resume(output_dir: str, resume) -> str | None:
    """`--resume` (True: the latest complete, intact checkpoint) or `--resume PATH` -> a checkpoint dir."""
    if not resume:
        return None
    if resume is True:
        found, damage = latest_intact_checkpoint(output_dir)
        if found is None and damage:
            raise UserError(f"--resume: no intact checkpoint in {output_dir}: {damage}")
        if found is None:
            raise UserError(f"--resume: no complete checkpoint in {output_dir}")
        log.info("resuming from %s", found)
        return found
    path = os.path.expanduser(str(resume))
    if not os.path.isdir(path):
        raise UserError(f"--resume: checkpoint not found: {resume}")
    if not checkpoint_is_complete(path):
        raise UserError(f"--resume: {resume} is incomplete (no readable trainer_state.json); "
                        "pass an earlier checkpoint or plain --resume for the latest complete one")
    damage = checkpoint_manifest.problem(path)
    if damage:
        raise UserError(f"--resume: {resume} is damaged: {damage}; pass an earlier checkpoint or plain "
                        "--resume for the latest intact one")
    return path
