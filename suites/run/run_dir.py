"""Which folders hold a trainsuite run, and what `--overwrite` may delete there.

A training run writes MARKER into its output_dir. Only a folder with the marker (or a run written
before markers existed: results.json with trainer_state.json, or a checkpoint-*/trainer_state.json)
counts as a previous run, and `--overwrite` deletes there only the files and folders a run writes
(RUN_FILES): a notes.txt, a data/ folder or the lock of the run that overwrites stay. A folder without
the marker that holds a file a run would write (a base model's config.json, a project's README.md) is
refused, with or without --overwrite: nothing in it is ours to replace. A folder without the marker
that holds nothing a run writes (a project folder with data and configs) may take a run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
import time

from ..config.redact import redact_argv
from ..errors import UserError
from .lock import LOCK_NAME

MARKER = ".trainsuite-run.json"
MARKER_VERSION = 1

# What a training run writes at the top of output_dir, read from the code that writes it.
RUN_FILES = (
    MARKER,
    # ours: runner, base trainer (results), outputs (report, figures, environment), tasks' save(), families
    "run_config.yaml", "results.json", "eval_results.json", "environment.json", "phase_timings.json",
    "trainsuite_totals.json", "report.html", "figures", "confusion_matrix.json", "confusion_matrix.png",
    "eval_predictions.jsonl", "eval_generations.jsonl", "predictions", "label_map.json", "sft_format.json",
    "mlruns",  # suites/outputs/tracking.py: MLflow's default store
    "*.json.tmp", "*.jsonl.tmp", "report.html.tmp",  # an interrupted atomic write
    # transformers.Trainer and trl: checkpoints (and their partial saves), state, TensorBoard, model card
    "checkpoint-*", ".partial-checkpoint-*", "trainer_state.json", "training_args.bin", "runs", "README.md",
    # save_pretrained of a model, a LoRA adapter and a tokenizer
    "config.json", "generation_config.json", "model.safetensors", "model-*.safetensors",
    "model.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json",
    "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
    "source.spm", "target.spm", "chat_template.jinja", "chat_template.json", "additional_chat_templates",
    "preprocessor_config.json", "processor_config.json",
)


# Folders with names common enough that a user's own may sit there (`output_dir: .` in a project with
# a runs/ folder of other runs): they are a run's only when every file in them is of the kind named here.
SHARED_NAMES = {"runs": ("events.out.tfevents.*",), "figures": ("*.png",),
                "predictions": ("*.jsonl", "*.jsonl.tmp")}


def _holds_only(folder: str, patterns) -> bool:
    for _, _, files in os.walk(folder):
        if not all(any(fnmatch.fnmatchcase(f, p) for p in patterns) for f in files):
            return False
    return True


def _written_by_a_run(output_dir: str, name: str) -> bool:
    if not any(fnmatch.fnmatchcase(name, p) for p in RUN_FILES):
        return False
    path = os.path.join(output_dir, name)
    if name in SHARED_NAMES and os.path.isdir(path) and not os.path.islink(path):
        return _holds_only(path, SHARED_NAMES[name])
    return True


def run_entries(output_dir: str) -> list:
    """The names in output_dir that a run writes (what --overwrite deletes), sorted."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(n for n in os.listdir(output_dir) if _written_by_a_run(output_dir, n))


def _is_legacy_run(output_dir: str) -> bool:
    """A run written before the marker: its training state beside its results, or in a checkpoint."""
    names = os.listdir(output_dir)
    if "results.json" in names and "trainer_state.json" in names:
        return True
    return any(n.startswith("checkpoint-") and os.path.isfile(os.path.join(output_dir, n, "trainer_state.json"))
               for n in names)


def is_run(output_dir: str) -> bool:
    """True when a trainsuite run wrote output_dir (its marker, or a run from before the marker)."""
    if not os.path.isdir(output_dir):
        return False
    return os.path.isfile(os.path.join(output_dir, MARKER)) or _is_legacy_run(output_dir)


def write_marker(output_dir: str) -> None:
    """Mark output_dir as a run's (rank 0, before the first file of the run); a resumed run keeps the
    marker of the run it continues."""
    path = os.path.join(output_dir, MARKER)
    if os.path.isfile(path):
        return
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(redact_argv(sys.argv)))
    os.makedirs(output_dir, exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump({"trainsuite_run": MARKER_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "command": command[:1000]}, fh, indent=1)
    os.replace(path + ".tmp", path)


def clear(output_dir: str) -> list:
    """Delete what a run wrote into output_dir (RUN_FILES); everything else stays, the lock of the
    run that overwrites included. Returns the names deleted."""
    names = run_entries(output_dir)
    for name in names:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    return names


def guard(output_dir: str, overwrite: bool, resume) -> None:
    """Before a training run writes into output_dir: never replace a previous run silently, never
    delete what a run did not write. In a multi-process launch rank 0 alone decides and deletes
    (ranks deleting the same tree at once fail); its error ends the launch."""
    if int(os.environ.get("RANK", "0")) != 0 or resume or not os.path.isdir(output_dir):
        return
    if is_run(output_dir):
        if not overwrite:
            raise UserError(f"output_dir {output_dir} holds a previous run; pass --resume to continue it "
                            "or --overwrite to replace it")
        clear(output_dir)  # the folder stays: this run holds its lock file
        return
    ours = [n for n in run_entries(output_dir) if n != LOCK_NAME]
    if not ours:
        return  # nothing here that a run writes: the run goes beside it
    shown = ", ".join(ours[:4]) + (f" and {len(ours) - 4} more" if len(ours) > 4 else "")
    if overwrite:
        raise UserError(f"--overwrite: output_dir {output_dir} was not written by trainsuite (no {MARKER}); "
                        f"nothing deleted. It holds {shown}: choose another output_dir")
    raise UserError(f"output_dir {output_dir} holds {shown}, which a run would overwrite, and was not "
                    f"written by trainsuite (no {MARKER}); choose another output_dir")
