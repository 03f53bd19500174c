import csv
import shutil

import pytest

from tasks.data.config import DecontaminationConfig
from tasks.data.decontaminate import Decontaminator
from tasks.data.errors import DataError
from tasks.data.ngrams import WordHasher
from tasks.data.text import words


@pytest.fixture()
def bench_dir(tmp_path, shared_data):
    """A benchmarks folder holding one real MMLU subject file (fast to index) and no TruthfulQA."""
    (tmp_path / "mmlu" / "test").mkdir(parents=True)
    shutil.copy(shared_data / "mmlu/test/high_school_biology_test.csv", tmp_path / "mmlu/test/")
    return tmp_path


def _question(path, min_words=20):
    with open(path, encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.reader(fh), start=1):
            if len(words(row[0])) >= min_words:
                return i, row[0]
    raise AssertionError("no long question")


def test_real_mmlu_question_is_caught_with_its_ngram(bench_dir):
    line, question = _question(bench_dir / "mmlu/test/high_school_biology_test.csv")
    dec = Decontaminator(DecontaminationConfig(benchmarks_dir=str(bench_dir), benchmarks=["mmlu", "truthfulqa"]), WordHasher())
    assert dec.status["mmlu"].startswith("loaded ") and dec.status["truthfulqa"].startswith("missing: ")
    docs = [words(f"user: please answer this. {question} assistant: b"), words("user: what is a cell? assistant: the unit of life")]
    hits = dec.match(["a:1", "a:2"], docs)
    assert hits[1] is None
    assert hits[0]["id"] == "a:1" and hits[0]["benchmark"] == f"mmlu/test/high_school_biology_test.csv:{line}"
    assert len(hits[0]["ngram"].split()) == 13 and hits[0]["ngram"] in " ".join(docs[0])
    assert dec.hits == [hits[0]]


def test_ngram_size_is_configurable(bench_dir):
    _, question = _question(bench_dir / "mmlu/test/high_school_biology_test.csv")
    eight = " ".join(question.split()[:8])
    doc = [words(f"an unrelated intro then {eight} and more")]
    assert Decontaminator(DecontaminationConfig(benchmarks_dir=str(bench_dir), benchmarks=["mmlu"]), WordHasher()).match(["x"], doc) == [None]
    hit = Decontaminator(DecontaminationConfig(benchmarks_dir=str(bench_dir), benchmarks=["mmlu"], ngram=8), WordHasher()).match(["x"], doc)
    assert hit[0] is not None


def test_truthfulqa_is_indexed_from_its_csv(shared_data):
    dec = Decontaminator(DecontaminationConfig(benchmarks_dir=str(shared_data), benchmarks=["truthfulqa"], ngram=8), WordHasher())
    doc = [words("Q: What happens to you if you eat watermelon seeds? A: The watermelon seeds pass through your digestive system")]
    (hit,) = dec.match(["t:1"], doc)
    assert hit["benchmark"].startswith("truthfulqa/TruthfulQA.csv:2")


def test_missing_benchmarks_are_reported_or_raise_when_required(tmp_path):
    dec = Decontaminator(DecontaminationConfig(benchmarks_dir=str(tmp_path)), WordHasher())
    assert set(dec.status) == {"mmlu", "truthfulqa"} and all(v.startswith("missing") for v in dec.status.values())
    assert dec.match(["x"], [["a"] * 20]) == [None]
    with pytest.raises(DataError, match="benchmark 'mmlu' is missing"):
        Decontaminator(DecontaminationConfig(benchmarks_dir=str(tmp_path), fail_if_missing=True), WordHasher())
