"""Writes the embedded SFT demo data set (configs/demo/sft_*.jsonl): one sentence about a person in, the
facts as one line of JSON out, e.g. "Lena Vogt, 34, lives in Porto." -> {"name": "Lena Vogt", "age": 34,
"city": "Porto"}. The instruct model answers in prose or loose JSON before training (exact match near 0);
a LoRA run of a few CPU minutes learns the strict format, which the exact-match metric checks.
Names and cities of the eval rows never occur in training. Run: python scripts/make_demo_sft_data.py"""

import json
import os
import random

FIRST = ["Lena", "Omar", "Mia", "Jonas", "Aisha", "Pedro", "Yuki", "Nora", "Ivan", "Chloe", "Ravi", "Sofia",
         "Tom", "Amara", "Felix", "Hana", "Leo", "Zara", "Mateo", "Ingrid", "Kofi", "Elena", "Sami", "Lucia"]
LAST = ["Vogt", "Haddad", "Rossi", "Berg", "Khan", "Silva", "Tanaka", "Olsen", "Petrov", "Martin", "Patel",
        "Novak", "Brown", "Okafor", "Weber", "Kim", "Moreau", "Ali", "Garcia", "Larsen", "Mensah", "Popescu"]
CITIES = ["Porto", "Lyon", "Kyoto", "Oslo", "Cairo", "Lima", "Austin", "Dublin", "Krakow", "Nairobi", "Seoul",
          "Quito", "Leeds", "Bergen", "Tunis", "Hanoi", "Perth", "Turin", "Accra", "Riga", "Denver", "Malaga"]
SENTENCES = [
    "{name}, {age}, lives in {city}.",
    "{name} is {age} years old and lives in {city}.",
    "Meet {name} from {city}, who is {age}.",
    "At {age}, {name} moved to {city}.",
    "{name} ({age}) works in {city}.",
    "Born {age} years ago, {name} now calls {city} home.",
]
INSTRUCTION = "Give name, age and city as JSON."


def row(rng, firsts, lasts, cities):
    name, age, city = f"{rng.choice(firsts)} {rng.choice(lasts)}", rng.randint(18, 89), rng.choice(cities)
    text = rng.choice(SENTENCES).format(name=name, age=age, city=city)
    answer = json.dumps({"name": name, "age": age, "city": city})
    return {"messages": [{"role": "user", "content": f"{INSTRUCTION}\n{text}"},
                         {"role": "assistant", "content": answer}]}


def main(out=None):
    rng = random.Random(25)
    # held-out people and places: the eval checks the format on names it never saw
    train = [row(rng, FIRST[:18], LAST[:16], CITIES[:16]) for _ in range(320)]
    evals = [row(rng, FIRST[18:], LAST[16:], CITIES[16:]) for _ in range(16)]
    out = out or os.path.join(os.path.dirname(__file__), "..", "configs", "demo")
    for name, rows in (("sft_train.jsonl", train), ("sft_eval.jsonl", evals)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
