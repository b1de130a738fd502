"""Train a tokenizer on the training texts (for models trained from scratch), offline.

The special tokens depend on the model family; each family passes its own `SpecialTokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass
class SpecialTokens:
    pad: str = "<pad>"
    unk: str = "<unk>"
    bos: str | None = None
    eos: str | None = None
    cls: str | None = None
    sep: str | None = None
    mask: str | None = None
    extra: tuple = ()
    # "bert": [CLS] a [SEP] b [SEP]; "eos": a </s>; "none": as is
    template: str = "none"

    def all(self) -> list[str]:
        toks = [self.pad, self.unk, self.bos, self.eos, self.cls, self.sep, self.mask, *self.extra]
        seen = []
        for t in toks:
            if t and t not in seen:
                seen.append(t)
        return seen


BERT_LIKE = SpecialTokens(pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]", mask="[MASK]", template="bert")
T5_LIKE = SpecialTokens(pad="<pad>", unk="<unk>", eos="</s>", template="eos")
# BART / mBART / LED from scratch: <s> is the bos id, </s> also starts the decoder; sources end in </s>
BART_LIKE = SpecialTokens(pad="<pad>", unk="<unk>", bos="<s>", eos="</s>", mask="<mask>", template="eos")
CHAT_LIKE = SpecialTokens(pad="<|pad|>", unk="<|unk|>", bos=None, eos="<|endoftext|>",
                          extra=("<|im_start|>", "<|im_end|>"), template="none")


def train_tokenizer(texts: Iterable[str], vocab_size: int, special: SpecialTokens,
                    algorithm: str = "bpe", lowercase: bool = False):
    """A `PreTrainedTokenizerFast` trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = special.all()
    if algorithm == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                          unk_token=special.unk)
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    elif algorithm == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=special.unk))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
    else:  # byte-level BPE: never an unknown character
        tok = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    norms = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(norms)
    tok.train_from_iterator((t for t in texts if t), trainer=trainer)

    if special.template == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{special.cls} $A {special.sep}", pair=f"{special.cls} $A {special.sep} $B:1 {special.sep}:1",
            special_tokens=[(t, tok.token_to_id(t)) for t in (special.cls, special.sep)])
    elif special.template == "eos":
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {special.eos}", pair=f"$A {special.eos} $B:1 {special.eos}:1",
            special_tokens=[(special.eos, tok.token_to_id(special.eos))])

    kwargs = {k + "_token": v for k, v in
              dict(pad=special.pad, unk=special.unk, bos=special.bos, eos=special.eos,
                   cls=special.cls, sep=special.sep, mask=special.mask).items() if v}
    if special.extra:
        kwargs["additional_special_tokens"] = list(special.extra)
    if special.template == "bert":  # segment ids mark the second text of a pair
        kwargs["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
