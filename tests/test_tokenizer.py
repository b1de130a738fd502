"""Tokenizers trained from data: reproducible for the default algorithms."""

import pytest

from tasks.tokenizer import BERT_LIKE, CHAT_LIKE, T5_LIKE, train_tokenizer
from tests.conftest import sentiment_rows


@pytest.mark.parametrize("algorithm, special", [("bpe", T5_LIKE), ("bpe", CHAT_LIKE), ("unigram", T5_LIKE)])
def test_training_twice_gives_the_same_vocabulary(algorithm, special):
    texts = [r["text"] for r in sentiment_rows(300)]
    a, b = (train_tokenizer(texts, 200, special, algorithm) for _ in range(2))
    assert a.get_vocab() == b.get_vocab()


def test_bert_like_pairs_have_segment_ids_and_specials():
    tok = train_tokenizer([r["text"] for r in sentiment_rows(100)], 120, BERT_LIKE, "wordpiece")
    enc = tok("the movie", "a story")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    assert enc["token_type_ids"][-1] == 1 and enc["token_type_ids"][0] == 0
