"""The run config: its schema (schema.py, one dataclass per section), how a YAML file becomes one
(loader.py: YAML, command-line overrides, types), and every check made before any model loads
(validate.py, with the sft/distributed/integrations/model_type rules, the ranges of train_values.py and
hints for misplaced keys; cheapest first, before torch/transformers are imported: training_fields.py reads
the `train:` keys TrainingArguments takes from transformers' source). inference.py loads the config of eval/predict, where a command-line
model.name_or_path wins over the file's from-scratch model. docs/config.md is generated from the
schema by reference.py.

May import: suites.errors, tasks (readers, metric names); nothing else of suites.
"""

from .loader import apply_overrides, from_dict, load, parse_override, read_yaml, yaml_load
from .schema import (TASKS, DataConfig, EarlyStoppingConfig, GenerationConfig, LossConfig, ModelConfig,
                     PeftConfig, QuantizationConfig, RunConfig, SFTConfig, TokenizerConfig)

__all__ = ["TASKS", "DataConfig", "EarlyStoppingConfig", "GenerationConfig", "LossConfig", "ModelConfig",
           "PeftConfig", "QuantizationConfig", "RunConfig", "SFTConfig", "TokenizerConfig", "apply_overrides",
           "from_dict", "load", "parse_override", "read_yaml", "yaml_load"]
