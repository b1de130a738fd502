"""Writes the embedded preference demo data set (configs/demo/pref_*.jsonl): short questions with two
replies each. The chosen reply follows a checkable rule -- one line that starts with "Answer:" and gives the
answer alone ("Answer: 12") -- and the rejected one is the chatty prose an instruct model writes by default
("7 plus 5 equals 12. Let me know if ..."). After a few CPU minutes of DPO with LoRA, the share of greedy
replies to held-out questions that follow the rule rises (benchmarks/preference_real.py checks it with
`follows_rule`). Eval questions use numbers and words that training never saw.
Run: python scripts/make_demo_pref_data.py"""

import json
import os
import random
import re

WORDS_TRAIN = ["garden", "river", "pencil", "window", "bottle", "candle", "forest", "rabbit", "silver", "orange",
               "planet", "basket", "mirror", "ladder", "butter", "pocket", "violin", "castle"]
WORDS_EVAL = ["harbor", "lantern", "meadow", "tunnel", "wizard", "cobalt", "saddle", "thimble"]
CHATTY = ["Sure! {fact}. Let me know if you have any other questions.", "Great question! {fact}.",
          "{fact}. I hope this helps!", "Of course. {fact}, so the answer is {answer}."]
RULE = re.compile(r"Answer: [^\n]{1,40}")


def follows_rule(reply: str) -> bool:
    """The demo's rule: one line, "Answer: " and the answer alone (at most 40 characters)."""
    return RULE.fullmatch(reply.strip()) is not None


def question(rng, numbers, words):
    kind = rng.randrange(4)
    a, b = rng.choice(numbers), rng.choice(numbers)
    if kind == 0:
        return f"What is {a} plus {b}?", str(a + b), f"{a} plus {b} equals {a + b}"
    if kind == 1:
        a, b = (a, b) if a != b else (a, b + 1)
        return f"Which number is larger, {a} or {b}?", str(max(a, b)), f"The larger number is {max(a, b)}"
    word = rng.choice(words)
    if kind == 2:
        return f"How many letters does the word '{word}' have?", str(len(word)), \
            f"The word '{word}' has {len(word)} letters"
    return f"What is the first letter of the word '{word}'?", word[0], \
        f"The first letter of '{word}' is '{word[0]}'"


def pair(rng, numbers, words):
    prompt, answer, fact = question(rng, numbers, words)
    rejected = rng.choice(CHATTY).format(fact=fact, answer=answer)
    return {"prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": f"Answer: {answer}"}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def main(out=None):
    rng = random.Random(24)
    train = [pair(rng, range(2, 40), WORDS_TRAIN) for _ in range(192)]
    evals = [pair(rng, range(41, 99), WORDS_EVAL) for _ in range(24)]
    out = out or os.path.join(os.path.dirname(__file__), "..", "configs", "demo")
    for name, rows in (("pref_train.jsonl", train), ("pref_eval.jsonl", evals)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
