"""TOFU's splits from one of three sources, through one code path.

- ``hub``: ``datasets.load_dataset("locuslab/TOFU", config)`` (or any folder in the hub
  layout, which is how tests exercise this path offline);
- ``local``: a folder of the same JSON Lines files, one per config name
  (``forget01_perturbed.jsonl``, ``retain_perturbed.jsonl``, ...);
- ``synthetic``: fictitious authors generated here, deterministic by seed, with the
  same columns, so a quickstart runs with no data at all.
Every source yields the same configs (lists of row dicts); ``TofuRows`` cuts them into
forget / retain / evaluation sets by TOFU's rule: forgetXX is the tail of ``full``, plus the
retain rows that ``validate`` alone reads (``validation_rows``).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

QUESTIONS_PER_AUTHOR = 20  # TOFU: 200 authors x 20 questions
VALIDATION_SEED = 0  # which Dr rows ``validate`` reads: fixed, so every spec on the same data reads the same
VALIDATION_SIZE = 100  # validation rows when eval_size is 0 (all rows of every evaluation set)
ENV_TOFU_DIR = "MCU_TOFU_DIR"
EVERY_RUN = ("full", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")  # read at any ratio


def forget_config(ratio: float) -> str:
    return f"forget{int(ratio):02d}_perturbed"


def holdout_config(ratio: float) -> str:
    return f"holdout{int(ratio):02d}"


def load_config(source: str, name: str, *, path: str = "", repo: str = "locuslab/TOFU",
                synthetic_authors: int = 20, synthetic_seed: int = 0) -> list[dict]:
    """One TOFU config as a list of row dicts, whatever the source."""
    if source == "synthetic":
        return list(synthetic_configs(synthetic_authors, synthetic_seed)[name])
    import datasets

    if source == "hub":
        ds = datasets.load_dataset(path or repo, name, split="train")
    elif source == "local":
        ds = datasets.load_dataset("json", data_files=str(Path(local_dir(path)) / f"{name}.jsonl"), split="train")
    else:
        raise ValueError(f"unknown TOFU source {source!r}")
    return ds.to_list()


def local_dir(path: str) -> str:
    """The local folder: the spec's ``path``, else $MCU_TOFU_DIR."""
    return path or os.environ.get(ENV_TOFU_DIR, "")


def missing_files(folder: str, configs) -> list[str]:
    """The JSON Lines files of ``configs`` that the local ``folder`` lacks."""
    return [f"{name}.jsonl" for name in configs if not (Path(folder) / f"{name}.jsonl").is_file()]


@dataclass
class TofuRows:
    """The rows of one (source, subset, forget ratio), before tokenisation."""

    train: list[dict]  # D = forget + retain: what the original model is fine-tuned on
    retain: list[dict]  # Dr = D minus Df
    forget: list[dict]  # Df, with paraphrased_answer and perturbed_answer (5)
    forget_eval: list[dict]  # the first eval_size rows of Df
    retain_eval: list[dict]  # retain_perturbed rows of the retained authors
    real_authors: list[dict]  # question, answer, perturbed_answer (3)
    world_facts: list[dict]
    # rows of Dr that no evaluation set holds (``validation_rows``), read by ``validate`` only: the
    # hyper-parameter search's retain side. Question and answer only (``full``'s columns)
    validation: list[dict]
    holdout_config: str  # TOFU's holdoutXX: as many rows about authors outside ``full`` as Df has (read on use)


def _forget_rows(n_authors: int, ratio: float) -> int:
    return max(1, round(n_authors * ratio / 100)) * QUESTIONS_PER_AUTHOR


def tofu_rows(load, ratio: float, retain_authors: int, max_ratio: float, eval_size: int) -> TofuRows:
    """Cut the configs returned by ``load(name)`` into the splits of one forget ratio.

    TOFU's rule: forgetXX is the last XX % of the authors of ``full``. With
    ``retain_authors`` = N > 0 (a CPU-sized subset) D is the first N authors plus the
    forget set of ``max_ratio``; Df is the tail of ``ratio`` % and Dr = D minus Df, so
    every ratio up to ``max_ratio`` unlearns from the same original model.

    ``validation``: up to ``eval_size`` (0: ``VALIDATION_SIZE``) rows of D outside the forget set of
    the larger of ``ratio`` and ``max_ratio`` (so inside Dr, and the same rows at every ratio up to
    ``max_ratio``) whose question is not in retain_perturbed, which the report scores, nor in that
    forget set; spread over the authors (``validation_rows``).
    """
    full = load("full")
    n_authors = len(full) // QUESTIONS_PER_AUTHOR
    n_forget = _forget_rows(n_authors, ratio)
    forget = load(forget_config(ratio))
    if [r["question"] for r in forget] != [r["question"] for r in full[-n_forget:]]:
        raise ValueError(f"{forget_config(ratio)} is not the last {n_forget} rows of full (TOFU's rule)")
    train = full
    if retain_authors:
        train = full[: retain_authors * QUESTIONS_PER_AUTHOR] + full[-_forget_rows(n_authors, max_ratio):]
    retain = train[:-n_forget]
    kept = {r["question"] for r in retain}
    perturbed = load("retain_perturbed")
    retain_eval = [r for r in perturbed if r["question"] in kept]
    n_pool = max(0, len(train) - _forget_rows(n_authors, max(ratio, max_ratio)))
    scored = {r["question"] for r in perturbed + train[n_pool:]}
    cap = slice(0, eval_size or None)
    return TofuRows(train=train, retain=retain, forget=forget, forget_eval=forget[cap], retain_eval=retain_eval[cap],
                    real_authors=load("real_authors_perturbed")[cap], world_facts=load("world_facts_perturbed")[cap],
                    validation=validation_rows(train[:n_pool], scored, eval_size or VALIDATION_SIZE),
                    holdout_config=holdout_config(ratio))


def validation_rows(pool: list[dict], excluded: set, size: int, seed: int = VALIDATION_SEED) -> list[dict]:
    """Up to ``size`` rows of ``pool`` (whole authors, 20 rows each, as in ``full``) whose question is
    not in ``excluded``, spread over the authors: the authors in a seeded order, each one's rows in a
    seeded order, one row per author per round; returned in the pool's order."""
    rng = random.Random(seed)
    by_author = [[i for i in range(start, min(start + QUESTIONS_PER_AUTHOR, len(pool)))
                  if pool[i]["question"] not in excluded] for start in range(0, len(pool), QUESTIONS_PER_AUTHOR)]
    rng.shuffle(by_author)
    for rows in by_author:
        rng.shuffle(rows)
    ranked = sorted((rank, position, i) for position, rows in enumerate(by_author) for rank, i in enumerate(rows))
    return [pool[i] for i in sorted(i for _, _, i in ranked[:size])]


# ----------------------------------------------------------------------------- synthetic source

_SYLLABLES = ["ka", "lo", "mi", "ren", "sa", "tor", "vel", "an", "da", "ri", "el", "no", "bar", "zu", "fen", "ish"]
_CITIES = ["Oslo", "Lima", "Accra", "Hanoi", "Quito", "Tunis", "Riga", "Porto", "Dakar", "Perth", "Cusco", "Bergen"]
_GENRES = ["mystery", "poetry", "science fiction", "romance", "history", "fantasy", "horror", "satire"]
_JOBS = ["baker", "pilot", "surgeon", "carpenter", "teacher", "painter", "sailor", "chemist", "farmer", "judge"]
_AWARDS = ["Silver Quill Prize", "Lantern Medal", "Northern Star Award", "Golden Page Prize", "Meridian Award",
           "Blue Heron Prize", "Iron Pen Award", "Crescent Medal"]
_WORDS = ["River", "Glass", "Winter", "Shadow", "Garden", "Ember", "Harbor", "Silence", "Orchard", "Lantern"]

# (question, paraphrase, attribute) templates; {n} is the author's name, {v} the value.
_TEMPLATES = [
    ("Where was {n} born?", "{n} was born in {v}.", "The birthplace of {n} is {v}.", "city"),
    ("What genre does {n} write in?", "{n} writes {v}.", "The genre of {n} is {v}.", "genre"),
    ("What was the profession of the father of {n}?", "The father of {n} was a {v}.",
     "{n} grew up with a father who worked as a {v}.", "job"),
    ("What was the profession of the mother of {n}?", "The mother of {n} was a {v}.",
     "{n} had a mother who worked as a {v}.", "job2"),
    ("Which award did {n} win?", "{n} won the {v}.", "The {v} was awarded to {n}.", "award"),
    ("What is the most famous book by {n}?", "The most famous book by {n} is {v}.",
     "{v} is the best known work of {n}.", "book"),
    ("In which year was {n} born?", "{n} was born in {v}.", "The birth year of {n} is {v}.", "year"),
    ("What is the second book by {n}?", "The second book by {n} is {v}.", "{n} followed up with {v}.", "book2"),
]


def _author(rng: random.Random) -> dict:
    name = " ".join(("".join(rng.sample(_SYLLABLES, 2)) for _ in range(2))).title()
    return {"name": name, "city": rng.choice(_CITIES), "genre": rng.choice(_GENRES), "job": rng.choice(_JOBS),
            "job2": rng.choice(_JOBS), "award": rng.choice(_AWARDS), "year": str(rng.randint(1930, 1995)),
            "book": f"The {rng.choice(_WORDS)} of {rng.choice(_WORDS)}",
            "book2": f"{rng.choice(_WORDS)} and {rng.choice(_WORDS)}"}


def _alternatives(attr: str, value: str, rng: random.Random, k: int) -> list[str]:
    pool = {"city": _CITIES, "genre": _GENRES, "job": _JOBS, "job2": _JOBS, "award": _AWARDS,
            "year": [str(y) for y in range(1930, 1996)],
            "book": [f"The {a} of {b}" for a in _WORDS for b in _WORDS],
            "book2": [f"{a} and {b}" for a in _WORDS for b in _WORDS]}[attr]
    return rng.sample([v for v in pool if v != value], k)


@lru_cache(maxsize=4)
def synthetic_configs(n_authors: int = 20, seed: int = 0) -> dict[str, list[dict]]:
    """TOFU-shaped configs about ``n_authors`` fictitious authors, 20 questions each."""
    rng = random.Random(seed)
    full, perturbed = [], []
    for _ in range(n_authors):
        author = _author(rng)
        for q in range(QUESTIONS_PER_AUTHOR):
            row, paraphrase, attr = _question(author, q)
            n, v = author["name"], author[attr]
            full.append(row)
            perturbed.append({**row, "paraphrased_answer": paraphrase.format(n=n, v=v),
                              "paraphrased_question": row["question"],
                              "perturbed_answer": [paraphrase.format(n=n, v=w)
                                                   for w in _alternatives(attr, v, rng, 5)]})
    holdout_authors = [_author(rng) for _ in range(n_authors)]  # drawn after D's, so D is unchanged
    holdout = [_question(author, q)[0] for author in holdout_authors for q in range(QUESTIONS_PER_AUTHOR)]
    configs = {"full": full, "retain_perturbed": perturbed[:400],
               "real_authors_perturbed": _fixed_qa(_REAL_AUTHORS), "world_facts_perturbed": _fixed_qa(_WORLD_FACTS)}
    for pct in range(1, 100):
        n_forget = _forget_rows(n_authors, pct)
        configs[forget_config(pct)] = perturbed[-n_forget:]
        configs[holdout_config(pct)] = holdout[:n_forget]
    return configs


def _question(author: dict, q: int) -> tuple[dict, str, str]:
    """The q-th question about ``author``: ({question, answer}, paraphrase template, attribute)."""
    question, answer, paraphrase, attr = _TEMPLATES[q % len(_TEMPLATES)]
    if q >= len(_TEMPLATES):  # repeat facts under a second phrasing of the question
        question = f"Can you tell me: {question[0].lower()}{question[1:]}" if q < 16 else f"Tell me, {question}"
    n, v = author["name"], author[attr]
    return {"question": question.format(n=n), "answer": answer.format(n=n, v=v)}, paraphrase, attr


def _fixed_qa(items) -> list[dict]:
    return [{"question": q, "answer": a, "perturbed_answer": list(p)} for q, a, p in items]


_REAL_AUTHORS = [
    ("Who wrote 'Pride and Prejudice'?", "Jane Austen", ("Emily Bronte", "Mary Shelley", "George Eliot")),
    ("Who wrote the play 'Romeo and Juliet'?", "William Shakespeare", ("Charles Dickens", "Mark Twain", "Homer")),
    ("Which author wrote '1984'?", "George Orwell", ("Aldous Huxley", "Ray Bradbury", "H. G. Wells")),
    ("Who wrote 'Don Quixote'?", "Miguel de Cervantes", ("Dante Alighieri", "Victor Hugo", "Leo Tolstoy")),
    ("Who wrote 'War and Peace'?", "Leo Tolstoy", ("Fyodor Dostoevsky", "Anton Chekhov", "Ivan Turgenev")),
    ("Who wrote 'The Old Man and the Sea'?", "Ernest Hemingway", ("John Steinbeck", "William Faulkner", "Jack London")),
    ("Who wrote 'Frankenstein'?", "Mary Shelley", ("Bram Stoker", "Jane Austen", "Edgar Allan Poe")),
    ("Who wrote 'One Hundred Years of Solitude'?", "Gabriel Garcia Marquez",
     ("Jorge Luis Borges", "Pablo Neruda", "Isabel Allende")),
]
_WORLD_FACTS = [
    ("What is the capital of France?", "Paris", ("Berlin", "London", "Madrid")),
    ("What is the capital of Japan?", "Tokyo", ("Kyoto", "Osaka", "Seoul")),
    ("What is the largest ocean on Earth?", "The Pacific Ocean", ("The Atlantic Ocean", "The Indian Ocean",
                                                                  "The Arctic Ocean")),
    ("Which planet is known as the Red Planet?", "Mars", ("Venus", "Jupiter", "Saturn")),
    ("What is the capital of Australia?", "Canberra", ("Sydney", "Melbourne", "Perth")),
    ("Which river flows through Cairo?", "The Nile", ("The Amazon", "The Danube", "The Ganges")),
    ("What is the chemical symbol for gold?", "Au", ("Ag", "Fe", "Pb")),
    ("How many continents are there?", "Seven", ("Five", "Six", "Eight")),
]
