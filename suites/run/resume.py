"""`--resume` (the latest complete checkpoint of output_dir) or `--resume PATH` -> a checkpoint dir."""

from __future__ import annotations

import logging
import os

from ..checkpoints import checkpoint_is_complete, latest_checkpoint
from ..errors import UserError

log = logging.getLogger("trainsuite")


def resolve_resume(output_dir: str, resume) -> str | None:
    """`--resume` (True: the latest complete checkpoint) or `--resume PATH` -> a checkpoint dir."""
    if not resume:
        return None
    if resume is True:
        found = latest_checkpoint(output_dir)
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
    return path
