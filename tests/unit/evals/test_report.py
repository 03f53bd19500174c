import base64
import re

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
