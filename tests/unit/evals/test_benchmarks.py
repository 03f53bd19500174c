import json

import numpy as np
import yaml

from evals.benchmarks import summarise, write_mmlu_tasks, write_truthfulqa_tasks


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mmlu_subset_is_stratified_and_deterministic(shared_data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    groups = write_mmlu_tasks(shared_data, a, per_subject=2, num_fewshot=0, seed=3, forms=["letter", "cloze"])
    write_mmlu_tasks(shared_data, b, per_subject=2, num_fewshot=0, seed=3, forms=["letter", "cloze"])
    assert groups == ["tf_mmlu", "tf_mmlu_cloze"]
    tests = sorted(a.glob("mmlu_*_test.jsonl"))
    assert len(tests) == 57
    assert all(len(_jsonl(p)) == 2 for p in tests)
    assert all(p.read_text() == (b / p.name).read_text() for p in tests)
    row = _jsonl(a / "mmlu_anatomy_test.jsonl")[0]
    assert len(row["choices"]) == 4 and row["answer"] in range(4)
    group = yaml.safe_load((a / "tf_mmlu_cloze.yaml").read_text())
    assert len(group["task"]) == 57 and all(t.startswith("tf_mmlu_cloze_") for t in group["task"])


def test_mmlu_full_set_reads_every_row(shared_data, tmp_path):
    write_mmlu_tasks(shared_data, tmp_path, per_subject=None, num_fewshot=5, seed=0, forms=["letter"])
    total = sum(len(_jsonl(p)) for p in tmp_path.glob("mmlu_*_test.jsonl"))
    assert total == 14079  # the early release in ../shared/data
    task = yaml.safe_load((tmp_path / "tf_mmlu_anatomy.yaml").read_text())
    assert task["num_fewshot"] == 5 and task["fewshot_split"] == "dev"
    assert "about anatomy" in task["description"]


def test_truthfulqa_targets_and_primer(shared_data, tmp_path):
    names = write_truthfulqa_tasks(shared_data, tmp_path, limit=None, seed=0, primer=True)
    assert names == ["tf_truthfulqa_mc1", "tf_truthfulqa_mc2"]
    rows = _jsonl(tmp_path / "truthfulqa_mc.jsonl")
    assert len(rows) == 817
    for row in rows:
        assert row["mc1_targets"]["labels"][0] == 1 and sum(row["mc1_targets"]["labels"]) == 1
        assert 1 in row["mc2_targets"]["labels"] and 0 in row["mc2_targets"]["labels"]
        assert row["prompt"].endswith(f"Q: {row['question']}\nA:")
    assert rows[0]["prompt"].startswith("Q: What is human life expectancy")
    assert "!function tf_utils.process_results_mc2" in (tmp_path / "tf_truthfulqa_mc2.yaml").read_text()
    write_truthfulqa_tasks(shared_data, tmp_path, limit=10, seed=0, primer=False)
    short = _jsonl(tmp_path / "truthfulqa_mc.jsonl")
    assert len(short) == 10 and short[0]["prompt"].startswith("Q: ")


def test_summarise_orders_items_by_task_then_doc():
    results = {"samples": {
        "tf_mmlu_b": [{"doc_id": 1, "acc": 0.0}, {"doc_id": 0, "acc": 1.0}],
        "tf_mmlu_a": [{"doc_id": 0, "acc": 1.0}],
        "tf_mmlu_cloze_a": [{"doc_id": 0, "acc": 0.0, "acc_norm": 1.0}],
        "tf_truthfulqa_mc2": [{"doc_id": 0, "acc": 0.25}],
    }}
    out = summarise(results)
    np.testing.assert_array_equal(out["per_item"]["mmlu"], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(out["per_item"]["mmlu_cloze"], [1.0])
    assert out["means"]["truthfulqa_mc2"] == 0.25 and "truthfulqa_mc1" not in out["means"]
