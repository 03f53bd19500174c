import base64
import re
from datetime import date, datetime, timezone

import numpy as np

from evals.drift import DriftConfig, drift_gate
from evals.report import flatten, group_history, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _verdict():
    base = np.r_[np.ones(600), np.zeros(400)]
    tuned = base.copy()
    tuned[:100] = 0  # -0.1: blocks mmlu
    return drift_gate(
        {"mmlu": base, "rougeL<x>": base}, {"mmlu": tuned, "rougeL<x>": base},
        DriftConfig(max_drop={"mmlu": 0.02}, n_resamples=200),
    )


def test_report_is_self_contained_escaped_and_writes_pngs(tmp_path):
    history = {
        "train_loss": [(1, 2.5), (2, 2.1), (3, 1.8)],
        "eval_loss": [(2, 2.2)],
        "learning_rate": [(1, 1e-4), (2, 8e-5), (3, 5e-5)],
        "grad_norm": [(1, 0.5), (2, 0.4)],
        "empty": [],
    }
    samples = [{"prompt": "<script>alert(1)</script>", "base": "a & b", "tuned": "\"quoted\" <b>"}]
    path = write_report(
        tmp_path / "run",
        config={"model": {"name": "tiny", "lora": {"r": 8}}, "lr": 1e-4},
        data_counts={"raw": 1000, "after_dedup": 870},
        history=history,
        verdict=_verdict(),
        samples=samples,
        extra_tables={"ifeval": {"strict_acc": 0.41}},
    )
    assert path == tmp_path / "run" / "report.html"
    assert sorted(p.name for p in path.parent.glob("*.png")) == ["grad_norm.png", "learning_rate.png", "loss.png"]
    for png in path.parent.glob("*.png"):
        assert png.read_bytes().startswith(PNG_MAGIC)

    page = path.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 3
    assert all(base64.b64decode(data).startswith(PNG_MAGIC) for data in embedded)
    assert 'src="' not in page.replace('src="data:', "")  # nothing external

    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b" in page and "&quot;quoted&quot; &lt;b&gt;" in page
    assert "rougeL&lt;x&gt;" in page
    assert "BLOCKED" in page and "mmlu: dropped 0.1000" in page
    assert "<td class=\"num\">-0.1000</td>" in page and "not gated" in page
    assert "<th>model.lora.r</th><td>8</td>" in page and "<th>after_dedup</th><td>870</td>" in page
    assert "<th>strict_acc</th><td>0.41</td>" in page


def test_group_history_and_flatten():
    groups = group_history({"train_loss": [(1, 1.0)], "eval_loss": [(1, 1.0)], "lr": [(1, 0.1)], "x y": [(1, 2.0)]})
    assert {k: sorted(v) for k, v in groups.items()} == {
        "loss": ["eval_loss", "train_loss"], "learning_rate": ["lr"], "x_y": ["x y"],
    }
    assert flatten({"a": {"b": {"c": 1}, "d": []}, "e": {}}) == {"a.b.c": 1, "a.d": [], "e": {}}


def test_report_without_history_or_samples(tmp_path):
    page = write_report(tmp_path, config={}, data_counts={}, history={}, verdict=_verdict(), samples=[]).read_text()
    assert "no history logged" in page and "no samples" in page
    assert list(tmp_path.glob("*.png")) == []


def _sections(page: str) -> list[str]:
    return re.findall(r"<h2>([^<]+)</h2>", page)


def test_results_come_before_the_config_and_small_intervals_are_greyed(tmp_path):
    verdict = drift_gate(
        {"mmlu": np.r_[np.ones(60), np.zeros(40)], "tiny": np.array([1.0, 0.0])},
        {"mmlu": np.r_[np.ones(50), np.zeros(50)], "tiny": np.array([0.0, 0.0])},
        DriftConfig(max_drop={}, n_resamples=200),
    )
    page = write_report(tmp_path, config={"lr": 1e-4}, data_counts={"raw": 3}, history={"loss": [(1, 1.0)]},
                        verdict=verdict, samples=[{"prompt": "p", "base": "b", "tuned": "t"}]).read_text()
    assert _sections(page) == ["Drift gate", "Evaluation", "Sample generations", "Training curves",
                               "Data preparation", "Configuration"]
    mmlu, tiny = (re.search(rf"<tr[^>]*><td>{m}</td>.*?</tr>", page).group(0) for m in ("mmlu", "tiny"))
    assert re.search(r"\[-\d\.\d{4}, [+-]\d\.\d{4}\]", mmlu)  # 100 items: the interval
    assert '<td class="num">2</td>' in tiny and "(n=2)" in tiny and "[" not in tiny  # 2 items: only the count
    assert 'class="few"' in tiny


def test_scores_table_folds_intervals_and_counts(tmp_path):
    base = {"perplexity": 12.5, "perplexity_ci_low": 11.0, "perplexity_ci_high": 14.25, "perplexity_n": 200.0,
            "gen_bleu": 0.1234}
    tuned = {"perplexity": 9.0, "perplexity_ci_low": 8.5, "perplexity_ci_high": 9.75, "perplexity_n": 200.0,
             "gen_bleu": 0.2, "win_rate": 1.0, "win_rate_ci_low": 1.0, "win_rate_ci_high": 1.0, "win_rate_n": 2.0,
             "kl_to_reference": 0.3, "kl_to_reference_ci_low": 0.1, "kl_to_reference_ci_high": 0.5,
             "classify_n": 30.0}
    page = write_report(tmp_path, config={}, data_counts={}, history={}, verdict=_verdict(), samples=[],
                        base_scores=base, tuned_scores=tuned).read_text()
    assert _sections(page)[:3] == ["Drift gate", "Evaluation", "Scores"]
    rows = {m: r for m, r in re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", page)}
    assert rows["perplexity"] == ('<td class="num">200</td><td class="num">12.5000 [11.0000, 14.2500]</td>'
                                  '<td class="num">9.0000 [8.5000, 9.7500]</td>')
    assert "(n=2)" in rows["win_rate"] and "[" not in rows["win_rate"]  # 2 items: the count, not [1, 1]
    assert "[0.1000, 0.5000]" in rows["kl_to_reference"]  # no count known: shown as is
    assert rows["gen_bleu"] == '<td class="num"></td><td class="num">0.1234</td><td class="num">0.2000</td>'
    assert rows["classify_n"].endswith('<td class="num"></td><td class="num">30.0000</td>')  # no metric "classify"
    assert not {"perplexity_ci_low", "perplexity_n", "win_rate_ci_high"} & rows.keys()


def test_repetitive_generations_are_flagged(tmp_path):
    loop = "I can help. I can help. I can help."
    samples = [{"prompt": "help?", "base": "Sure, open the settings page.", "tuned": loop},
               {"prompt": "hi", "base": "Hello!", "tuned": "Hi, how can I help you today?"}]
    page = write_report(tmp_path, config={}, data_counts={}, history={}, verdict=_verdict(),
                        samples=samples).read_text()
    assert page.count('<span class="flag">repetitive</span>') == 1
    assert f'<td class="degenerate"><span class="flag">repetitive</span><pre>{loop}</pre>' in page
    assert "Repetitive replies: base 0 of 2, tuned 1 of 2." in page


def test_header_has_run_id_date_and_safe_links(tmp_path):
    links = {"MLflow run": "http://127.0.0.1:5000/#/experiments/3/runs/abc123",
             "Prefect flow run": "http://127.0.0.1:4200/runs/flow-run/f-1",
             "bad": 'javascript:alert("x")'}
    page = write_report(tmp_path, config={}, data_counts={}, history={}, verdict=_verdict(), samples=[],
                        run_id="abc123", created=date(2024, 5, 17), links=links).read_text()
    header = re.search(r'<p class="meta">(.*?)</p>', page).group(1)
    assert page.index('<p class="meta">') < page.index("<h2>")
    assert header == ('run <code>abc123</code> &middot; 2024-05-17'
                      ' &middot; <a href="http://127.0.0.1:5000/#/experiments/3/runs/abc123">MLflow run</a>'
                      ' &middot; <a href="http://127.0.0.1:4200/runs/flow-run/f-1">Prefect flow run</a>'
                      ' &middot; bad: javascript:alert(&quot;x&quot;)')  # not an anchor
    dated = write_report(tmp_path, config={}, data_counts={}, history={}, verdict=_verdict(), samples=[],
                         created=datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc)).read_text()
    assert '<p class="meta">2024-05-17 09:30 UTC</p>' in dated
    undated = write_report(tmp_path, config={}, data_counts={}, history={}, verdict=_verdict(), samples=[]).read_text()
    assert re.search(r'<p class="meta">\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC</p>', undated)  # written now

