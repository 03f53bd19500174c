"""Model Registry promotion: which registered version is `candidate` and which is `champion`.

Rules, applied to one freshly registered version:
- every version gets its gate verdict and metrics as tags (`gate.passed`, `metric.<name>`), so later
  comparisons read them from the registry without needing the training run;
- a failing version gets no alias;
- a passing version becomes `candidate` (the alias moves: it names the latest passing version);
- it also becomes `champion` when there is none yet, or when it is at least as good as the current
  champion on every configured metric and strictly better on at least one. "Better" follows
  `higher_is_better`, which must name every champion metric: a wrong default would silently promote
  a model with a higher loss.
"""
from __future__ import annotations

from mlflow.exceptions import MlflowException

CANDIDATE = "candidate"
CHAMPION = "champion"
METRIC_TAG = "metric."
GATE_TAG = "gate.passed"


def _champion(client, model_name: str):
    """The version holding the champion alias, or None (MLflow raises when an alias is unset)."""
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def version_metrics(client, mv) -> dict[str, float]:
    """Metrics of a registered version: its `metric.*` tags, falling back to its run's final metrics."""
    metrics = {}
    if mv.run_id:
        try:
            metrics.update(client.get_run(mv.run_id).data.metrics)
        except MlflowException:
            pass  # the run was deleted: the tags are the record
    metrics.update({k[len(METRIC_TAG):]: float(v) for k, v in mv.tags.items() if k.startswith(METRIC_TAG)})
    return metrics


def compare_to_champion(
    candidate: dict[str, float], champion: dict[str, float], metrics: list[str], higher_is_better: dict[str, bool]
) -> tuple[bool, str]:
    """(beats, why): beats when >= on every metric and > on at least one, in each metric's direction."""
    strictly_better = []
    for name in metrics:
        if name not in champion:
            return False, f"champion has no value for {name}; promote manually"
        ours, theirs = candidate[name], champion[name]
        sign = 1.0 if higher_is_better[name] else -1.0
        if sign * (ours - theirs) < 0:
            return False, f"worse on {name}: {ours:.6g} vs champion {theirs:.6g}"
        if sign * (ours - theirs) > 0:
            strictly_better.append(name)
    if not strictly_better:
        return False, "ties the champion on every metric"
    return True, f"better on {', '.join(strictly_better)} and no worse elsewhere"


def promote(
    client,
    model_name: str,
    version: str | int,
    metrics: dict[str, float],
    verdict_passed: bool,
    champion_metrics: list[str],
    higher_is_better: dict[str, bool],
) -> dict:
    """Tag `version`, then move `candidate` / `champion` aliases per the rules above; return what was done."""
    version = str(version)
    missing = [m for m in champion_metrics if m not in metrics]
    if missing:
        raise ValueError(f"metrics for promotion are missing: {missing}")
    undirected = [m for m in champion_metrics if m not in higher_is_better]
    if undirected:
        raise ValueError(f"higher_is_better needs a direction for: {undirected}")

    client.set_model_version_tag(model_name, version, GATE_TAG, str(verdict_passed).lower())
    for name, value in metrics.items():
        client.set_model_version_tag(model_name, version, f"{METRIC_TAG}{name}", repr(float(value)))

    result = {"model_name": model_name, "version": version, "passed": verdict_passed, "aliases": [],
              "previous_champion": None, "reason": ""}
    if not verdict_passed:
        result["reason"] = "drift gate failed: no alias"
        return result

    client.set_registered_model_alias(model_name, CANDIDATE, version)
    result["aliases"].append(CANDIDATE)

    current = _champion(client, model_name)
    if current is None:
        beats, why = True, "no champion yet"
    elif current.version == version:
        beats, why = False, "already champion"
        result["aliases"].append(CHAMPION)
    else:
        result["previous_champion"] = current.version
        beats, why = compare_to_champion(
            metrics, version_metrics(client, current), champion_metrics, higher_is_better
        )
    if beats:
        client.set_registered_model_alias(model_name, CHAMPION, version)
        result["aliases"].append(CHAMPION)
    result["reason"] = why
    return result
