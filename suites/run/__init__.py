"""The run: what turns a command into a finished run directory. cli.py (the `trainsuite` command),
runner.py (config -> task -> model -> trainer -> outputs for train, eval and predict), launch.py
(`scripts/launch`: torchrun, DeepSpeed and FSDP presets, several machines), signals.py (SIGTERM/SIGINT:
checkpoint and stop; the exit codes of a stopped run), resume.py (`--resume`), lock.py (one run per
output_dir), run_dir.py (which folders are runs; what --overwrite may delete), merge.py (fold a LoRA
adapter into its base model) and starter.py (`trainsuite init`).

May import: everything below it (suites' trainers, outputs, callbacks, config, errors; tasks;
collators). Nothing imports the run layer.
"""
