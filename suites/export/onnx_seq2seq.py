"""An encoder-decoder model (T5, BART, Marian ...) as two ONNX graphs for onnxruntime, and the greedy loop
that runs them:

    encoder.onnx   input_ids, attention_mask [batch, source]            -> last_hidden_state
    decoder.onnx   decoder_input_ids [batch, target], encoder_hidden_states, attention_mask -> logits

The decoder has no key/value cache: each step runs it on the whole target so far (simple, and for short
outputs on a CPU cheap enough; a cached decoder is what optimum's exporter adds). Batch, source and target
lengths are dynamic.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

ENCODER, DECODER = "encoder.onnx", "decoder.onnx"


class Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class Decoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids, encoder_hidden_states, attention_mask):
        return self.model(encoder_outputs=(encoder_hidden_states,), attention_mask=attention_mask,
                          decoder_input_ids=decoder_input_ids, use_cache=False).logits


def write(model, tokenizer, folder: str, opset: int) -> dict:
    start = model.config.decoder_start_token_id
    sample = tokenizer(["a b c", "a"], return_tensors="pt", padding=True)
    ids, mask = sample["input_ids"], sample["attention_mask"]
    target = torch.full((2, 3), start, dtype=torch.long)
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer notes each Python branch on a shape; the tests feed other batch sizes and lengths
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # eval() on each wrapper: the exporter puts a module back in the mode it found it in
        encoder = Encoder(model).eval()
        hidden = encoder(ids, mask)
        torch.onnx.export(encoder, (ids, mask), os.path.join(folder, ENCODER), opset_version=opset, dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "source"},
                                        "attention_mask": {0: "batch", 1: "source"},
                                        "last_hidden_state": {0: "batch", 1: "source"}})
        torch.onnx.export(Decoder(model).eval(), (target, hidden, mask), os.path.join(folder, DECODER),
                          opset_version=opset, dynamo=False,
                          input_names=["decoder_input_ids", "encoder_hidden_states", "attention_mask"],
                          output_names=["logits"],
                          dynamic_axes={"decoder_input_ids": {0: "batch", 1: "target"},
                                        "encoder_hidden_states": {0: "batch", 1: "source"},
                                        "attention_mask": {0: "batch", 1: "source"},
                                        "logits": {0: "batch", 1: "target"}})
    model.generation_config.save_pretrained(folder)
    return {"files": [ENCODER, DECODER], "decoder_start_token_id": start}


def greedy(encoder, decoder, input_ids: np.ndarray, attention_mask: np.ndarray, start_id: int, stop_ids,
           max_new_tokens: int) -> list[list[int]]:
    """Greedy decoding with two onnxruntime sessions: per row, the new ids up to (not including) its stop."""
    hidden = encoder.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
    target = np.full((len(input_ids), 1), start_id, dtype=np.int64)
    done = np.zeros(len(input_ids), dtype=bool)
    for _ in range(max_new_tokens):
        logits = decoder.run(None, {"decoder_input_ids": target, "encoder_hidden_states": hidden,
                                    "attention_mask": attention_mask})[0]
        nxt = logits[:, -1].argmax(-1)
        nxt[done] = stop_ids[0]  # a finished row only pads
        target = np.concatenate([target, nxt[:, None].astype(np.int64)], axis=1)
        done |= np.isin(nxt, stop_ids)
        if done.all():
            break
    rows = []
    for row in target[:, 1:].tolist():
        cut = next((i for i, t in enumerate(row) if t in stop_ids), len(row))
        rows.append(row[:cut])
    return rows
