"""trainsuite: task-specialized trainers for classification, seq2seq and SFT.

The layers, lowest first (tests/test_layers.py keeps every import pointing down):
- tasks/ and collators/ (separate packages): data and metrics; batches.
- suites/errors.py: the one-line user mistake.
- suites/config/: the run config, its schema and every check made before a model loads.
- suites/callbacks/: trainer callbacks every family gets (early stopping, non-finite guard, throughput).
- suites/outputs/: report, figures, experiment tracking.
- suites/ itself, the trainers: base.py (SuiteTrainer, what every family shares), one module per family
  (classification.py, seq2seq.py, sft.py), family.py (a family's recipe), losses.py, generation.py
  (batched, process-split generation), modeling.py (models, tokenizers, LoRA, quantization; loading_info.py says
  in one line what a checkpoint lacked), sft_speed.py
  (attention and speed defaults); saving: checkpoints.py (atomic checkpoints), checkpoint_manifest.py
  (sizes and hashes checked before a resume), final_eval.py (the final
  save and evaluation without repeating the last step's), best_checkpoint.py, run_totals.py (results of
  a resumed run), file_modes.py; processes: distributed.py, fsdp_cpu.py, fsdp_wrap.py; phase_timings.py.
- suites/run/: the command line, the runner, the launcher, signals and resume.
"""

__version__ = "0.1.0"
