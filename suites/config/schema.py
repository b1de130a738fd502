"""The run config's schema: one dataclass per section, with its defaults and comments (docs/config.md
is generated from them by reference.py). `train:` holds transformers.TrainingArguments fields.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal, Optional, Union



TASKS = ("classification", "seq2seq", "sft", "preference")
# Keys of `train:` that the suite owns and sets itself.
RESERVED_TRAIN_KEYS = {"output_dir": "output_dir (top level)", "seed": "seed (top level)"}


@dataclass
class ModelConfig:
    name_or_path: Optional[str] = None  # hub name, local dir, or package:<module>[/<subdir>]
    # converted once to an ordinary model folder, kept in $TRAINSUITE_MODEL_CACHE (default
    # ~/.cache/trainsuite/models): later runs load that folder in a second or two
    gguf_file: Optional[str] = None  # a GGUF file in that dir or hub repo (e.g. SmolLM2-135M-Instruct.Q4_1.gguf)
    from_config: Optional[dict] = None  # transformers config fields, to train from scratch
    revision: Optional[str] = None  # hub branch, tag or commit
    trust_remote_code: bool = False  # allow a hub model's own Python code
    attn_implementation: Optional[str] = None  # sdpa | eager | flash_attention_2 | flex_attention


@dataclass
class TokenizerConfig:
    name_or_path: Optional[str] = None  # default: the model's own
    train_from_data: bool = False
    vocab_size: int = 8000
    # byte-level bpe trains reproducibly; the tokenizers library's wordpiece and unigram trainers do
    # not (their vocabularies vary between trainings): resume reloads the saved tokenizer, and in a
    # multi-process run rank 0 trains it and sends it to the others
    algorithm: Literal["bpe", "unigram", "wordpiece"] = "bpe"
    lowercase: bool = False


@dataclass
class DataConfig:
    train: Union[str, dict, None] = None  # file, hub dataset, or {source: f, target: f}
    eval: Union[str, dict, None] = None
    eval_fraction: Optional[float] = None  # hold out this share of train when no eval file
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    format: Optional[str] = None  # sft: text | prompt_completion | messages | sharegpt | alpaca
    # classification
    text_column: str = "text"
    text_pair_column: Optional[str] = None
    label_column: str = "label"
    problem_type: Optional[
        Literal["single_label_classification", "multi_label_classification", "regression"]
    ] = None
    labels: Optional[list] = None  # fixed label order; default: sorted labels seen in train
    max_length: int = 256
    # seq2seq
    source_column: str = "source"
    target_column: str = "target"
    source_lang: Optional[str] = None
    target_lang: Optional[str] = None
    source_prefix: str = ""
    max_source_length: int = 256
    max_target_length: int = 256
    # reuse the splits a run with the same data, tokenizer and settings prepared (tasks/prepared_cache.py):
    # true (in $TRAINSUITE_CACHE, default ~/.cache/trainsuite/prepared), a folder, or false
    prepared_cache: Union[bool, str] = True


@dataclass
class LossConfig:
    class_weights: Union[str, list, None] = None  # "auto" or one weight per class
    label_smoothing: Optional[float] = None  # default: 0.1 for seq2seq from scratch, else 0
    multi_label_threshold: float = 0.5


@dataclass
class PeftConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: Union[str, list] = "all-linear"
    use_dora: bool = False
    use_rslora: bool = False


@dataclass
class QuantizationConfig:
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True


@dataclass
class GenerationConfig:
    num_beams: int = 1
    max_new_tokens: int = 128
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: Optional[int] = None  # default: per_device_eval_batch_size (at most 32 on a CPU)
    forced_bos_token: Optional[str] = None  # seq2seq: first decoder token, e.g. mBART/NLLB target code de_DE


@dataclass
class EarlyStoppingConfig:
    # stops after `patience` evaluations in a row without improvement of train.metric_for_best_model
    # (default loss); the best checkpoint is loaded at the end unless train.load_best_model_at_end: false
    patience: int = 3  # evaluations without improvement of metric_for_best_model before stopping
    threshold: float = 0.0  # an improvement must be larger than this (in the metric's units)


@dataclass
class SFTConfig:
    max_length: int = 1024
    # packed rows give the same loss as unpacked ones, much faster; left unset, packing is off only for
    # remote model code, a leaky model.attn_implementation or context parallelism
    packing: Optional[bool] = None  # padding-free packed rows; default: on where it cannot leak (docs/sft.md)
    # per device, replacing per_device_train_batch_size: with packing one padding-free row of at most
    # this many tokens, else length-bucketed batches of at most this many tokens padding included.
    # Unset: per_device_train_batch_size rows (packed: bins of max_length, so at most batch x max_length)
    batch_tokens: Optional[int] = None  # token budget of a training micro-batch, instead of a batch size
    loss_on: Optional[Literal["all", "completion", "assistant"]] = None  # default by data format
    neftune_alpha: Optional[float] = None
    overlong: Literal["truncate", "drop"] = "truncate"
    eval_generations: int = 0  # held-out eval prompts to generate completions for at each evaluation


@dataclass
class PreferenceConfig:
    # sigmoid: DPO; ipo: IPO (log-ratios averaged per token); robust: DPO with flipped-label noise;
    # orpo and simpo: reference-free (length-normalized log-probs; no reference model at all)
    loss: Literal["sigmoid", "ipo", "robust", "orpo", "simpo"] = "sigmoid"  # the preference loss (docs/preference.md)
    beta: float = 0.1  # DPO/robust: KL strength; IPO: tau; ORPO: lambda of the odds-ratio term; SimPO: reward scale
    label_smoothing: float = 0.0  # robust: the share of pairs whose label is taken as flipped, in [0, 0.5)
    simpo_gamma: float = 0.5  # simpo: the target reward margin
    max_length: int = 1024  # tokens of prompt + the longer reply; the prompt is cut from its left first
    max_prompt_length: int = 512  # a longer prompt keeps its last tokens (the reply is never cut)
    # reference log-probs computed once before training and kept with the prepared data (no reference
    # forward per step); with LoRA the reference is the base model with the adapter disabled
    precompute_ref: bool = False  # reference log-probs once before training, cached with the prepared data
    eval_generations: int = 0  # held-out eval prompts to generate replies for at each evaluation


@dataclass
class SweepConfig:
    # read by `trainsuite sweep` only (docs/sweep.md); `trainsuite train` ignores the block
    trials: int = 10  # trials to finish (complete, pruned or failed); --trials overrides
    metric: Optional[str] = None  # default: train.metric_for_best_model
    direction: Optional[Literal["maximize", "minimize"]] = None  # default: minimize for a loss, else maximize
    pruner: Literal["median", "hyperband", "none"] = "median"  # fed by every evaluation of a trial
    # evaluations before this optimizer step never prune (a warmup or a slow start is not a bad trial)
    prune_after_step: int = 0  # no trial is pruned before this step
    # dotted config key -> {log_uniform: [lo, hi]} | {uniform: [lo, hi]} | {choice: [a, b, ...]}
    # | {int: [lo, hi], step: k}
    space: dict = field(default_factory=dict)  # the keys to tune and their ranges
    seed: Optional[int] = None  # seeds the TPE sampler; default: the run's seed
    timeout_s: Optional[float] = None  # no new trial starts after this many seconds of a sweep command
    nproc: int = 1  # processes per trial; above 1 each trial runs through scripts/launch --nproc N
    # no trial is selected on it: at the end the best trial and the config as written (trained once in
    # OUTPUT_DIR/baseline) are evaluated on it, side by side in sweep.json and sweep.html
    holdout: Union[str, dict, None] = None  # a held-out data file (as data.eval): best trial vs the config as written


@dataclass
class RunConfig:
    task: Literal["classification", "seq2seq", "sft", "preference"]  # the task family
    output_dir: str = "runs/default"  # checkpoints, model, results.json, predictions, reports
    seed: int = 42  # seeds model init, data order and dropout
    # "stop" ends the run (exit 4) naming the step, keeping the last good checkpoint; "skip" drops
    # that update and counts it in results.json (nonfinite_steps_skipped)
    nonfinite: Literal["stop", "skip"] = "stop"  # on a NaN/inf loss or gradient: stop | skip the step
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: dict = field(default_factory=dict)  # transformers.TrainingArguments fields
    loss: LossConfig = field(default_factory=LossConfig)
    peft: Optional[PeftConfig] = None  # present = LoRA on
    quantization: Optional[QuantizationConfig] = None  # present = load in 4/8 bit
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)  # task: preference (DPO, IPO, ORPO, SimPO)
    # present = stop when train.metric_for_best_model (default: loss) stops improving; the best
    # checkpoint is loaded at the end unless train.load_best_model_at_end is false
    early_stopping: Optional[EarlyStoppingConfig] = None  # {patience: 3, threshold: 0.0}
    sweep: Optional[SweepConfig] = None  # a hyperparameter search for `trainsuite sweep` (docs/sweep.md)
    source_path: Optional[str] = None  # where the YAML came from (set by load)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def dataclass_of(tp):
    for a in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(a):
            return a
    return None


def training_argument_names() -> set[str]:
    """The fields a `train:` block may set: transformers.TrainingArguments' init fields (read from its
    source, not imported: training_fields.py)."""
    from .training_fields import training_fields

    return set(training_fields().names)
