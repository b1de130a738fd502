"""safetensors (0.8) writes its files with mode 0600 whatever the umask, so a run folder shared with a
group or read by another user holds everything but the weights. Saved weights get the mode every
other file of the run gets (0666 less the umask)."""

from __future__ import annotations

import os
import stat


def umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def share_like_other_files(directory: str) -> None:
    """Give the *.safetensors files directly in `directory` the umask's default file mode."""
    if not directory or not os.path.isdir(directory):
        return
    mode = 0o666 & ~umask()
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith(".safetensors") and os.path.isfile(path) and stat.S_IMODE(os.stat(path).st_mode) != mode:
            os.chmod(path, mode)
