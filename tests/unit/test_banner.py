"""Stage banners: one line per stage with its time and its result's `summary()`."""
import json
from pathlib import Path

from evals.drift import GateVerdict, MetricRow
from evals.suite import Scores
from tasks.banner import banner
from tasks.data.pipeline import PreparedData
from tasks.evaluate import EvalResult, ModelEval
from tasks.model import ModelRef
from tasks.package import PackageResult
from tasks.training.common import TrainResult, Trained
from tasks.vocab import ExtensionResult


def test_a_banner_aligns_name_time_and_summary():
    model = ModelRef(name_or_path="embedded:smollm2-135m-instruct", path="/c/smollm2")
    assert banner("resolve_model", 0.04, model) == \
        "resolve_model       0.0 s  embedded:smollm2-135m-instruct (float32)"
    assert banner("score_base", 0.3, model, cached=True) == \
        "score_base         cached  embedded:smollm2-135m-instruct (float32)"
    assert banner("merge_adapters", 12.25, {"no": "summary"}) == "merge_adapters     12.2 s"


def test_prepared_data_counts_rows_drops_and_pii(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"pii": {"found": {"EMAIL": 4, "PHONE": 3, "IBAN": 1},
                                          "actions": {"EMAIL": "redact", "PHONE": "redact", "IBAN": "drop"}}}))
    data = PreparedData(train_path=tmp_path / "t", validation_path=tmp_path / "v", quarantine_path=tmp_path / "q",
                        report_path=report, data_docs_path=None, digest="d", licenses={}, kind="sft",
                        counts={"rows_in": 374, "rows_kept": 359, "dropped_exact_duplicate": 11,
                                "dropped_near_duplicate": 3, "dropped_pii": 0, "rows_train": 323,
                                "rows_validation": 36})
    assert data.summary() == ("374 in, 359 kept (323 train, 36 validation); dropped 11 exact duplicate, "
                              "3 near duplicate; 7 PII redacted; 1 PII dropped")
    report.unlink()  # a summary never fails a run
    assert data.summary().endswith("3 near duplicate")


def test_training_tokenizer_and_package_summaries():
    trained = TrainResult(recipe="sft", method="lora", adapter_dir=Path("a"), history_path=Path("h"),
                          trainable_params=921_600, total_params=135_436_608, first_loss=4.1741, final_loss=3.9938,
                          train_runtime_s=19.5, resumed_from=None)
    assert trained.summary() == "sft / lora: loss 4.174 -> 3.994, 0.9M of 135.4M params trained"
    assert Trained(method="merge-ties", adapter_dir=Path("m")).summary() == "sft / merge-ties: an adapter"
    assert ExtensionResult(tokenizer_dir=Path("t"), added=[], tokens_per_word_before=1.4,
                           tokens_per_word_after=1.4).summary() == "no tokens added"
    assert ExtensionResult(tokenizer_dir=Path("t"), added=["Stratovault", " vaultctl"], mined=["vaultctl"],
                           tokens_per_word_before=1.52, tokens_per_word_after=1.31).summary() == \
        "2 tokens added (1 mined), tokens per word 1.52 -> 1.31"
    assert PackageResult(package_dir=Path("/r/package/adapter"), registered_model="smollm2-support-lora",
                         version="4", aliases=["candidate"]).summary() == \
        "smollm2-support-lora v4 @candidate, /r/package/adapter"
    assert PackageResult(package_dir=Path("/r/p")).summary() == "packaged /r/p (not registered)"


def test_evaluation_summaries_name_the_verdict_and_the_first_metrics():
    row = MetricRow(metric="mmlu_cloze", n=57, base_mean=0.263, tuned_mean=0.246, delta=-0.0175, ci_low=-0.05,
                    ci_high=0.0, threshold=0.05, blocked=False)
    means = {"perplexity": 62.7301, "perplexity_ci_low": 52.75, "perplexity_ci_high": 74.73, "perplexity_n": 24,
             "mmlu_cloze": 0.24561, "truthfulqa_mc1": 0.28, "truthfulqa_mc2": 0.43149, "gen_rougeL": 0.143}
    passed = EvalResult(base={}, tuned=means, report_path=Path("r"), samples=[],
                        verdict=GateVerdict(passed=True, reasons=[], rows=[row], confidence=0.95))
    assert passed.summary() == ("gate passed (1 metrics at 95%); perplexity 62.73, mmlu_cloze 0.2456, "
                                "truthfulqa_mc1 0.28, truthfulqa_mc2 0.4315, +1 more")
    failed = passed.model_copy(update={"verdict": GateVerdict(passed=False, reasons=["mmlu_cloze dropped"],
                                                              rows=[row], confidence=0.95)})
    assert failed.summary().startswith("gate FAILED: mmlu_cloze dropped (1 metrics at 95%)")
    assert ModelEval(scores=Scores(means={"perplexity": 66.97}), replies=[]).summary() == "perplexity 66.97"
