"""`trainsuite sweep`: a hyperparameter search on Optuna, each trial an ordinary run in its own process.

space.py (the `sweep.space` block), study.py (storage, sampler, pruner, re-queueing an interrupted
trial), trial.py (one trial: `trainsuite train` in a subprocess), reporter.py (inside the trial's
process: evaluations to the study, a pruned trial stopped), worker.py (the loop), holdout.py (the best
trial vs the config as written, on a file no trial was selected on), outputs.py (sweep.json, best.yaml,
sweep.html) and figures.py (its PNGs).
"""
