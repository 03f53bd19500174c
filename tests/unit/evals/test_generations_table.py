"""The evaluate stage logs its sample generations as an MLflow table (eval/generations.json)."""
import json
from types import SimpleNamespace

from mlflow import MlflowClient

import tasks.evaluate as ev
from evals.config import EvalConfig
from evals.drift import GateVerdict
from tasks.stage import RunRef
from tasks.tracking import RunLogger


def test_sample_generations_become_an_mlflow_table(mlflow_uri, tmp_path, monkeypatch):
    samples = [{"prompt": "How do I start a backup?", "base": "I am not sure.", "tuned": "Run `backup start`."}]

    def fake_compare(cfg, base, model, vocab, trained, data, out_dir, tracking_uri, train):
        return ev.EvalResult(base={"perplexity": 9.0}, tuned={"perplexity": 7.0}, samples=samples,
                             verdict=GateVerdict(passed=True, reasons=[], rows=[], confidence=0.95),
                             report_path=out_dir / "eval_report.json")

    monkeypatch.setattr(ev, "_compare", fake_compare)
    monkeypatch.setattr(ev, "create_markdown_artifact", lambda **kw: None)
    logger, _ = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "d", tmp_path / "artifacts")
    ev.evaluate.fn(EvalConfig(), None, None, None, SimpleNamespace(recipe="sft"), None, tmp_path / "eval",
                   RunRef(run_id=logger.run_id, tracking_uri=mlflow_uri))
    client = MlflowClient(mlflow_uri)
    run = client.get_run(logger.run_id)
    table = client.load_table(run.info.experiment_id, "eval/generations.json", run_ids=[logger.run_id])
    assert table[["prompt", "base", "tuned"]].to_dict("records") == samples
    assert {"path": "eval/generations.json", "type": "table"} in json.loads(run.data.tags["mlflow.loggedArtifacts"])
