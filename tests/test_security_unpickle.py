"""Nothing we read back runs code (docs/security.md): a YAML tag in a config, a pickle planted in a
checkpoint. Each plant would create a file if it ran."""

from __future__ import annotations

import builtins
import contextlib
import pickle

from suites.run.cli import run
from tests.conftest import write_yaml


class Plant:
    """Unpickling it opens (creates) `path`: proof that a pickle was loaded without weights_only."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return builtins.open, (self.path, "w")


def test_a_python_tag_in_a_config_file_does_not_run(tmp_path, cls_config, capsys):
    pwned = tmp_path / "PWNED"
    text = open(write_yaml(tmp_path / "c.yaml", cls_config)).read()
    path = tmp_path / "tagged.yaml"
    path.write_text(text + f"notes: !!python/object/apply:builtins.open [{str(pwned)!r}, w]\n")
    assert run(["train", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
    assert not pwned.exists()


def test_a_pickle_planted_in_a_checkpoint_does_not_run(tmp_path, cls_config):
    cls_config["data"]["max_train_samples"] = 16
    cls_config["train"] = {"max_steps": 2, "save_strategy": "steps", "save_steps": 1, "use_cpu": True,
                           "per_device_train_batch_size": 8}
    cfg = write_yaml(tmp_path / "c.yaml", cls_config)
    assert run(["train", cfg]) == 0
    ckpt = tmp_path / "run" / "checkpoint-1"
    pwned = tmp_path / "PWNED"
    for name in ("rng_state.pth", "optimizer.pt", "scheduler.pt", "training_args.bin"):
        with open(ckpt / name, "wb") as fh:
            pickle.dump(Plant(pwned), fh)
    # refused, replaced by an earlier checkpoint or reported: what matters is that the plant never runs
    with contextlib.suppress(Exception):
        run(["train", cfg, "--resume", str(ckpt)])
    assert not pwned.exists()
