"""TOFU's rows from each source (local files, the hub layout read offline, the synthetic authors) cut by
TOFU's rule: forgetXX is the tail of ``full``; and the validation rows, whole authors' unscored rows
taken one per author per round."""
import shutil

from mcu_ray.tasks.tofu_data import QUESTIONS_PER_AUTHOR, load_config, synthetic_configs, tofu_rows, validation_rows

NEEDED = ("full", "forget01_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed",
          "holdout01")


def test_local_source_follows_tofus_rule(tofu_dir):
    load = lambda name: load_config("local", name, path=str(tofu_dir))  # noqa: E731
    rows = tofu_rows(load, ratio=1, retain_authors=10, max_ratio=1, eval_size=300)
    assert len(rows.forget) == 40 and len(rows.retain) == 200 and len(rows.train) == 240
    full = load("full")
    assert [r["question"] for r in rows.forget] == [r["question"] for r in full[-40:]]
    assert len(rows.forget[0]["perturbed_answer"]) == 5 and "paraphrased_answer" in rows.forget[0]
    assert len(rows.retain_eval) == 200  # retain_perturbed rows of the 10 kept authors
    assert len(rows.real_authors) == 100 and len(rows.world_facts) == 117
    whole = tofu_rows(load, ratio=1, retain_authors=0, max_ratio=10, eval_size=300)
    assert len(whole.train) == 4000 and len(whole.retain) == 3960


def test_hub_path_reads_the_hub_layout_offline(tofu_dir, tmp_path, monkeypatch):
    """The hub code path (datasets.load_dataset(repo, config)) on a local folder in the hub layout."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    repo = tmp_path / "TOFU"
    repo.mkdir()
    configs = "\n".join(f"- config_name: {n}\n  data_files: {n}.jsonl" for n in NEEDED)
    (repo / "README.md").write_text(f"---\nconfigs:\n{configs}\n---\n# TOFU (test copy)\n")
    for name in NEEDED:
        shutil.copy(tofu_dir / f"{name}.jsonl", repo / f"{name}.jsonl")
    for name in NEEDED:
        assert load_config("hub", name, path=str(repo)) == load_config("local", name, path=str(tofu_dir))


def test_synthetic_source_is_deterministic_and_tofu_shaped():
    a, b = synthetic_configs(10, seed=3), synthetic_configs(10, seed=3)
    assert a == b and synthetic_configs(10, seed=4)["full"] != a["full"]
    assert len(a["full"]) == 200
    assert a["forget10_perturbed"][0]["question"] == a["full"][-20]["question"]
    row = a["forget10_perturbed"][0]
    assert set(row) == {"question", "answer", "paraphrased_answer", "paraphrased_question", "perturbed_answer"}
    assert len(row["perturbed_answer"]) == 5 and row["answer"] not in row["perturbed_answer"]
    assert len(a["real_authors_perturbed"][0]["perturbed_answer"]) == 3


def test_validation_rows_take_one_unscored_row_per_author_per_round():
    """Three authors of 20 rows; the excluded questions are never taken; asking for 4 rows takes one from
    each author, then a second from the first author of the seeded order; they come back in the pool's order."""
    pool = [{"question": f"a{a}q{q}"} for a in range(3) for q in range(QUESTIONS_PER_AUTHOR)]
    excluded = {f"a1q{q}" for q in range(19)}  # author 1 keeps one row
    rows = validation_rows(pool, excluded, size=4)
    authors = [int(r["question"][1]) for r in rows]
    assert sorted(set(authors)) == [0, 1, 2] and len(rows) == 4
    assert [r for r in rows if r["question"].startswith("a1")] == [{"question": "a1q19"}]
    assert rows == sorted(rows, key=pool.index)
    assert validation_rows(pool, excluded, size=100) == [r for r in pool if r["question"] not in excluded]
