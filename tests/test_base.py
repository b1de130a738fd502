"""The shared base: precision choice, throughput accounting."""

from __future__ import annotations

from suites import base
from suites.callbacks import throughput


def test_pause_clock_leaves_eval_and_save_time_out(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: now[0])
    clock = throughput.PauseClock()
    now[0] = 101.0
    clock.on_step_end(None, None, None)  # a step ends
    now[0] = 131.0
    clock.on_evaluate(None, None, None)  # a 30 s evaluation
    now[0] = 133.0
    clock.on_save(None, None, None)  # a 2 s checkpoint
    assert clock.take() == 32.0
    assert clock.take() == 0.0  # taken once


def test_precision_explicit_choice_wins():
    assert base.pick_precision({"bf16": False}) == {}
    assert base.pick_precision({"fp16": True}) == {}


def test_progress_bars_follow_log_level(tmp_path, cls_config, monkeypatch):
    from suites import config
    from tests.conftest import write_yaml

    monkeypatch.setattr(base.sys.stderr, "isatty", lambda: True)
    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config))
    assert base.training_arguments(cfg, has_eval=True).disable_tqdm is False
    cfg.train["log_level"] = "warning"
    assert base.training_arguments(cfg, has_eval=True).disable_tqdm is True


def test_count_samples_counts_documents_of_packed_rows():
    import torch

    padded = {"input_ids": torch.zeros(4, 7, dtype=torch.long), "attention_mask": torch.ones(4, 7)}
    assert throughput.count_samples(padded) == 4
    packed = {"input_ids": torch.zeros(1, 9, dtype=torch.long),
              "position_ids": torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])}
    assert throughput.count_samples(packed) == 3


def test_count_tokens_real_tokens_only():
    import torch

    padded = {"input_ids": torch.zeros(2, 5, dtype=torch.long),
              "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}
    assert throughput.count_tokens(padded) == 8
    packed = {"input_ids": torch.zeros(1, 9, dtype=torch.long), "position_ids": torch.zeros(1, 9)}
    assert throughput.count_tokens(packed) == 9
    seq2seq = dict(padded, labels=torch.tensor([[5, 6, -100], [7, -100, -100]]))
    assert throughput.count_tokens(seq2seq, encoder_decoder=True) == 8 + 3
    assert throughput.count_tokens(seq2seq) == 8  # a causal LM's labels are its inputs


def test_apply_peft_keeps_a_loaded_adapter():
    """eval/predict of a LoRA run dir with its training config (peft block included) must not wrap the
    trained adapter in a second, untrained one (every family goes through apply_peft)."""
    import transformers
    from peft import PeftModel

    from suites.config import PeftConfig, RunConfig
    from suites.modeling import apply_peft

    cfg = RunConfig(task="sft", peft=PeftConfig(r=2, alpha=4, target_modules=["q_proj", "v_proj"]))
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2))
    wrapped = apply_peft(cfg, model, "CAUSAL_LM")
    assert isinstance(wrapped, PeftModel)
    assert apply_peft(cfg, wrapped, "CAUSAL_LM") is wrapped
