"""Work a run no longer repeats (issue 17): the final evaluation, the final save, the confusion
figure, padded evaluation batches; and the CPU generation batch."""

from __future__ import annotations

import copy
import json
import os
from types import SimpleNamespace

import torch

from suites import config, final_eval
from suites.run import runner
from suites.classification import ClassificationTrainer
from suites.generation import CPU_GENERATION_BATCH, generation_batch_size
from tests.conftest import sentiment_rows, write_jsonl, write_yaml


def _train_cfg(tmp_path, cls_config, **train):
    c = copy.deepcopy(cls_config)
    c["train"].update({"num_train_epochs": 2, "save_strategy": "epoch", **train})
    return config.load(write_yaml(tmp_path / "c.yaml", c))


def _count_evaluations(monkeypatch) -> list:
    calls = []
    original = ClassificationTrainer.evaluate

    def counting(self, *a, **k):
        calls.append(self.state.global_step)
        return original(self, *a, **k)

    monkeypatch.setattr(ClassificationTrainer, "evaluate", counting)
    return calls


def test_final_metrics_reuse_the_last_epoch_evaluation(tmp_path, cls_config, monkeypatch):
    calls = _count_evaluations(monkeypatch)
    results = runner.train(_train_cfg(tmp_path, cls_config))
    assert len(calls) == 2  # one per epoch; no third pass over the same weights
    state = json.load(open(os.path.join(tmp_path, "run", "trainer_state.json")))
    last = [r for r in state["log_history"] if "eval_accuracy" in r][-1]
    assert last["step"] == state["global_step"]
    assert results["eval_accuracy"] == last["eval_accuracy"] and results["eval_loss"] == last["eval_loss"]


def test_final_evaluation_runs_when_the_last_step_was_not_evaluated(tmp_path, cls_config, monkeypatch):
    calls = _count_evaluations(monkeypatch)
    # 96 rows, batch 16: 6 steps; evaluation at steps 4 only
    runner.train(_train_cfg(tmp_path, cls_config, num_train_epochs=1, eval_strategy="steps", eval_steps=4,
                            save_strategy="no"))
    assert calls == [4, 6]


def _fake_trainer(global_step, history, load_best=False, best=None):
    state = SimpleNamespace(global_step=global_step, log_history=history, best_model_checkpoint=best)
    return SimpleNamespace(state=state, args=SimpleNamespace(load_best_model_at_end=load_best))


def test_last_step_eval_only_when_it_scored_the_weights_in_memory():
    history = [{"loss": 1.0, "step": 4}, {"eval_loss": 0.5, "epoch": 1.0, "step": 4},
               {"loss": 0.9, "step": 8}, {"eval_loss": 0.7, "epoch": 2.0, "step": 8}]
    assert final_eval.last_step_eval(_fake_trainer(8, history)) == {"eval_loss": 0.7, "epoch": 2.0}
    # a best checkpoint other than the last was loaded: other weights, evaluate again
    assert final_eval.last_step_eval(_fake_trainer(8, history, True, "out/checkpoint-4")) is None
    # the best checkpoint is the last one: the same weights
    assert final_eval.last_step_eval(_fake_trainer(8, history, True, "out/checkpoint-8")) is not None
    # training went on after the last evaluation
    assert final_eval.last_step_eval(_fake_trainer(9, history)) is None
    assert final_eval.last_step_eval(_fake_trainer(8, history[:1] + [{"loss": 0.9, "step": 8}])) is None


def test_final_model_is_the_last_checkpoint_linked_and_resume_still_works(tmp_path, cls_config):
    cfg = _train_cfg(tmp_path, cls_config, num_train_epochs=1)
    runner.train(cfg)
    out = os.path.join(tmp_path, "run")
    ckpt = os.path.join(out, "checkpoint-6")
    assert os.path.samefile(os.path.join(out, "model.safetensors"), os.path.join(ckpt, "model.safetensors"))
    assert os.path.isfile(os.path.join(ckpt, "optimizer.pt"))  # the training state stays for --resume
    for name in ("config.json", "tokenizer.json", "training_args.bin"):
        assert os.path.isfile(os.path.join(out, name))
    assert not os.path.exists(os.path.join(out, "optimizer.pt"))
    # continue the same run for a second epoch from its last checkpoint
    cfg2 = _train_cfg(tmp_path, cls_config, num_train_epochs=2)
    results = runner.train(cfg2, resume=True)
    assert os.path.isdir(os.path.join(out, "checkpoint-12"))
    assert "eval_accuracy" in results
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(out)


def test_confusion_figure_is_drawn_once(tmp_path, cls_config, monkeypatch):
    import tasks.metrics.plots as plots

    drawn = []
    original = plots.confusion_matrix_png
    monkeypatch.setattr(plots, "confusion_matrix_png", lambda *a: (drawn.append(a[2]), original(*a)))
    runner.train(_train_cfg(tmp_path, cls_config, save_strategy="no"))
    assert len(drawn) == 1  # two evaluations, one figure, by the report
    out = os.path.join(tmp_path, "run")
    assert os.path.isfile(os.path.join(out, "confusion_matrix.png"))
    assert os.path.isfile(os.path.join(out, "figures", "confusion_matrix.png"))


def test_eval_rows_run_longest_first_and_files_keep_row_order(tmp_path, cls_config):
    rows = sentiment_rows(30, 1)
    for i, r in enumerate(rows):  # lengths 1..10 words in no order
        r["text"] = " ".join((r["text"].split() * 2)[: 1 + (i * 7) % 10])
    cls_config = copy.deepcopy(cls_config)
    cls_config["data"]["eval"] = write_jsonl(tmp_path / "eval_varied.jsonl", rows)
    cfg = _train_cfg(tmp_path, cls_config, num_train_epochs=1, save_strategy="no")
    _, task, _, _, data = runner.build(cfg, "train")
    lengths = [len(x) for x in data["eval"]["input_ids"]]
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) > 1
    runner.train(_train_cfg(tmp_path, cls_config, num_train_epochs=1, save_strategy="no"), overwrite=True)
    rows = [json.loads(x) for x in open(os.path.join(tmp_path, "run", "eval_predictions.jsonl"))]
    expected = [json.loads(x) for x in open(cls_config["data"]["eval"])]
    assert [r["text"] for r in rows] == [e["text"] for e in expected]
    assert [r["label"] for r in rows] == [e["label"] for e in expected]
    # predict answers row n for input n, though it runs the rows longest first
    from suites.family import family_for

    cfg = config.load(write_yaml(tmp_path / "c.yaml", cls_config))
    family, task, _, trainer, data = runner.build(cfg, "predict", predict_input=cls_config["data"]["eval"])
    got = family.predict_rows(trainer, task, data["predict"], None)
    plain = trainer.predict(data["predict"].remove_columns(
        [c for c in ("labels",) if c in data["predict"].column_names]))
    logits = plain.predictions[0] if isinstance(plain.predictions, tuple) else plain.predictions
    for row, lg in zip(got, torch.as_tensor(logits).softmax(-1)):
        assert abs(row["probabilities"][task.labels[0]] - float(lg[0])) < 1e-4
    assert family_for(cfg).__class__ is family.__class__


def test_cpu_generation_batch_is_capped_unless_asked():
    def size(gen_batch, device, eval_batch=256):
        return generation_batch_size(SimpleNamespace(batch_size=gen_batch), eval_batch, torch.device(device))

    assert size(None, "cpu") == CPU_GENERATION_BATCH
    assert size(None, "cpu", eval_batch=8) == 8
    assert size(100, "cpu") == 100  # generation.batch_size is the user's choice
    assert size(None, "cuda") == 256


def test_phase_timings_are_written(tmp_path, cls_config):
    runner.train(_train_cfg(tmp_path, cls_config))
    phases = json.load(open(os.path.join(tmp_path, "run", "phase_timings.json")))
    for key in ("startup_and_imports", "load_and_check_data", "tokenizer", "encode", "model", "trainer_init",
                "train_loop_with_evaluations_and_checkpoints", "final_save", "final_evaluation",
                "report_and_figures"):
        assert phases[key] >= 0, key
    assert len(phases["evaluations_s"]) == 2 and len(phases["checkpoint_saves_s"]) == 2
