"""One .gguf file for llama.cpp and Ollama, written with the `gguf` package (the format's own Python library):
the weights under llama.cpp's tensor names, f16 or q8_0, and in the metadata the architecture's shape, the
byte-level BPE vocabulary (tokens, types, merges, special ids) and the chat template the run trained with.

llama.cpp runs Llama attention with rotary pairs (i, i + d/2) taken as interleaved pairs (2i, 2i + 1): the
rows of q_proj and k_proj are reordered head by head to match (transformers' GGUF reader undoes it on load);
Qwen2 keeps the transformers order (llama.cpp rotates it the NeoX way).
"""

from __future__ import annotations

import json
import os
import re

from ..errors import UserError
from tasks.instruction import end_of_turn_ids

# model_type -> (gguf architecture, whether q/k rows are permuted for llama.cpp's rotary layout)
ARCHITECTURES = {"llama": ("llama", True), "mistral": ("llama", True), "qwen2": ("qwen2", False)}
# transformers' Split regexes of byte-level tokenizers -> llama.cpp's pre-tokenizer names (tokenizer.ggml.pre)
PRE_TOKENIZER_NAMES = ("llama-bpe", "qwen2", "tekken", "gpt-4o")
FILE_NAME = "model-{quant}.gguf"


def check(run) -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UserError("export: --format gguf needs the gguf package: pip install 'trainsuite[export]'") from None
    if run.family != "sft" or run.model_type not in ARCHITECTURES:
        raise UserError(f"export: --format gguf takes a decoder-only {', '.join(sorted(ARCHITECTURES))} model; "
                        f"{run.path} is a {run.model_type} {run.family} model (use --format safetensors"
                        + (" or onnx)" if run.family == "classification" else ")"))
    if run.config.get("rope_scaling") or (run.config.get("rope_parameters") or {}).get("rope_type", "default") \
            not in ("default", None):
        raise UserError(f"export: --format gguf: {run.path} uses scaled rotary positions, which this export "
                        "does not write; use --format safetensors")


def check_loaded(run, model, tokenizer) -> None:
    pre_tokenizer(tokenizer)  # raises for a vocabulary llama.cpp would split differently


def pre_tokenizer(tokenizer) -> str:
    """llama.cpp's name for how this byte-level BPE splits text before its merges."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise UserError(f"export: --format gguf writes byte-level BPE vocabularies (GPT-2, Llama 3, Qwen2, "
                        f"SmolLM); this tokenizer is {spec['model']['type']} without byte-level pieces: use "
                        "--format safetensors and llama.cpp's convert_hf_to_gguf.py")
    pre = spec["pre_tokenizer"]
    if pre["type"] == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    splits = [p for p in pre.get("pretokenizers", ()) if p["type"] == "Split"]
    if len(splits) == 1:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

        regex = splits[0]["pattern"].get("Regex")
        for name in PRE_TOKENIZER_NAMES:
            if GGUF_PRE_TOKENIZER_SPLITS.get(name) == regex:
                return name
    raise UserError("export: --format gguf: the tokenizer splits text with a rule llama.cpp has no name for "
                    "here; use --format safetensors and llama.cpp's convert_hf_to_gguf.py")


GENERATION_TAG = re.compile(r"\{%(-?)\s*(?:end)?generation\s*(-?)%\}")


def portable_template(template: str) -> str:
    """The template without transformers' {% generation %} markers (they mark the assistant's tokens for
    training masks and render nothing; llama.cpp's Jinja engine does not know them). Each becomes an empty
    expression with the same whitespace control, so the text rendered is the same."""
    return GENERATION_TAG.sub(lambda m: "{{" + m.group(1) + " '' " + m.group(2) + "}}", template)


def permute_rotary_rows(w, n_heads: int):
    """Per head, rows [first halves..., second halves...] -> [(h0, h0'), (h1, h1'), ...] interleaved."""
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _vocab(tokenizer, rows: int):
    import gguf

    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    specials = set(tokenizer.all_special_ids)
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for i in range(rows):  # an embedding larger than the vocabulary: placeholders llama.cpp never emits
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        if i not in by_id:
            types.append(gguf.TokenType.UNUSED)
        elif i in specials or (i in added and added[i].special):
            types.append(gguf.TokenType.CONTROL)
        elif i in added:
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    return tokens, types, merges


def _metadata(w, run, model, tokenizer, arch: str) -> None:
    import gguf

    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    rope = (getattr(c, "rope_parameters", None) or {}).get("rope_theta") or getattr(c, "rope_theta", 10000.0)
    w.add_name(f"{run.model_type}-{os.path.basename(os.path.abspath(run.path))}")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float(rope))
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    rows = model.get_input_embeddings().num_embeddings
    w.add_vocab_size(rows)
    tokens, types, merges = _vocab(tokenizer, rows)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre_tokenizer(tokenizer))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
           "pad": tokenizer.pad_token_id}
    for name, value in ids.items():
        if value is not None:
            getattr(w, f"add_{name}_token_id")(value)
    ends = [i for i in end_of_turn_ids(tokenizer) if i != tokenizer.eos_token_id]
    if ends:  # llama.cpp stops at eos and at eot; Ollama's Modelfile lists the same (docs/export.md)
        w.add_eot_token_id(ends[0])
    probe = tokenizer("a")["input_ids"]
    w.add_add_bos_token(bool(probe) and probe[0] == tokenizer.bos_token_id)
    w.add_add_eos_token(bool(probe) and probe[-1] == tokenizer.eos_token_id and len(probe) > 1)
    if getattr(tokenizer, "chat_template", None):
        w.add_chat_template(portable_template(tokenizer.chat_template))


def _tensors(w, model, arch_name: str, permute: bool, quant: str) -> int:
    import gguf
    import numpy as np

    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    c = model.config
    names = gguf.get_tensor_name_map(arch, c.num_hidden_layers)
    tied = bool(getattr(c, "tie_word_embeddings", False))
    count = 0
    for hf_name, tensor in model.state_dict().items():
        stem, _, suffix = hf_name.rpartition(".")
        if tied and stem == "lm_head":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(stem)
        if name is None:
            raise UserError(f"export: --format gguf: no llama.cpp name for the tensor {hf_name}")
        data = tensor.detach().float().numpy()
        if permute and suffix in ("weight", "bias") and stem.endswith(("q_proj", "k_proj")):
            heads = c.num_attention_heads if stem.endswith("q_proj") else c.num_key_value_heads
            data = permute_rotary_rows(data, heads)
        if data.ndim == 1:  # norms and biases stay f32, as llama.cpp's own converter writes them
            w.add_tensor(f"{name}.{suffix}", data.astype(np.float32))
        elif quant == "q8_0" and data.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(f"{name}.{suffix}", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(f"{name}.{suffix}", data.astype(np.float16))
        count += 1
    return count


# Ollama renders prompts with Go templates, not Jinja: ChatML written in its syntax
OLLAMA_CHATML = ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
                 '{{ end }}<|im_start|>assistant\n')


def default_system(tokenizer) -> str | None:
    """The system prompt a ChatML template inserts when a conversation has none (SmolLM2's "You are a
    helpful AI assistant named SmolLM ..."), else None. Ollama puts a Modelfile's SYSTEM in front of a
    conversation that has no system message, so SYSTEM carries it."""
    from jinja2 import TemplateError

    probe = "Hi"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": probe}], tokenize=False,
                                             add_generation_prompt=True)
    except TemplateError:  # a template that wants more than one user turn: nothing to learn here
        return None
    head, sep, _ = text.partition(f"<|im_start|>user\n{probe}<|im_end|>")
    if not sep or not head.startswith("<|im_start|>system\n") or not head.endswith("<|im_end|>\n"):
        return None
    return head[len("<|im_start|>system\n"):-len("<|im_end|>\n")]


def modelfile(gguf_name: str, tokenizer) -> str:
    """An Ollama Modelfile: the file, the chat template where it is ChatML (with the system prompt the
    template adds by default), a stop at each end of turn."""
    text = f"FROM ./{gguf_name}\n"
    template = getattr(tokenizer, "chat_template", None) or ""
    if "<|im_start|>" in template and "<|im_end|>" in template:
        text += f'TEMPLATE """{OLLAMA_CHATML}"""\n'
        system = default_system(tokenizer)
        if system and '"""' not in system:
            text += f'SYSTEM """{system}"""\n'
        elif system:
            text += "# SYSTEM: the template's default system prompt holds three quotes; add it by hand\n"
    else:
        text += "# TEMPLATE: Ollama reads the chat template from the GGUF metadata when it knows it\n"
    for token in tokenizer.convert_ids_to_tokens(end_of_turn_ids(tokenizer)):
        text += f'PARAMETER stop "{token}"\n'
    return text


def write(run, model, tokenizer, folder: str, quant: str | None) -> dict:
    import gguf

    quant = quant or "f16"
    arch, permute = ARCHITECTURES[run.model_type]
    path = os.path.join(folder, FILE_NAME.format(quant=quant))
    w = gguf.GGUFWriter(path, arch)
    _metadata(w, run, model, tokenizer, arch)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tensors = _tensors(w, model, arch, permute, quant)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(folder, "Modelfile"), "w", encoding="utf-8") as fh:
        fh.write(modelfile(os.path.basename(path), tokenizer))
    return {"file": os.path.basename(path), "quant": quant, "architecture": arch, "tensors": tensors,
            "eos_token_id": end_of_turn_ids(tokenizer)}
