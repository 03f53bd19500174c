"""MLflow pyfunc flavour for an adapter: the registry stores the adapter and a reference to its base model.

Logging the base weights with every version would copy hundreds of MB per run; the base is re-loaded
from its reference (its Hub id, or a local path) at load time, as MLflow's PEFT guidance recommends.

A saved model carries its own code, so `mlflow.pyfunc.load_model("models:/<name>@champion")` works where tuneforge
is not installed: the few tuneforge modules its load/predict path imports (`shipped_modules`: this one and what it
imports, found by reading the imports) go in as `code_paths`, and the pip requirements pin the installed versions of
every third-party package that code imports (`pinned_requirements`). This module is one of the shipped ones: it
imports mlflow and `tasks.model` at the top, everything else on use.
"""
from __future__ import annotations

import ast
import importlib.metadata
import shutil
import sys
import tempfile
from pathlib import Path

import mlflow

from tasks.model import ModelRef

_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `tasks` and `evals` packages
_LOCAL = {"tasks", "evals", "flows"}  # this project's top-level packages
_ENTRY = "tasks.packaging.pyfunc"  # what the models-from-code files (pyfunc_*.py) import


class AdapterModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from tasks.training.loading import load_trained

        cfg, files = context.model_config, context.artifacts
        self.max_new_tokens = int(cfg.get("max_new_tokens", 128))
        # the recorded base is portable (the embedded model's Hub id); `recorded` maps it back to the local copy
        base = ModelRef.recorded(cfg["base_model"], cfg.get("dtype", "float32"), bool(cfg.get("trust_remote_code", False)))
        self.model, self.tokenizer = load_trained(base, files["tokenizer"], files.get("adapter"), files.get("model"))

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        """Greedy chat replies, one per prompt."""
        from evals.perplexity import generate_replies

        messages = [[{"role": "user", "content": p}] for p in model_input]
        n = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        return generate_replies(self.model, self.tokenizer, messages, n)


class RewardModel(mlflow.pyfunc.PythonModel):
    """A registered reward model: `predict([{"prompt": ..., "reply": ...}, ...])` -> one score per row."""

    def load_context(self, context):
        from evals.winrate import RewardJudge

        self.judge = RewardJudge(context.artifacts["model"])

    def predict(self, context, model_input: list[dict[str, str]], params: dict | None = None) -> list[float]:
        return self.judge.score([r["prompt"] for r in model_input], [r["reply"] for r in model_input]).tolist()


class ClassifierModel(mlflow.pyfunc.PythonModel):
    """A registered text classifier (recipe classify): `predict(["text", ...])` -> one label per text."""

    def load_context(self, context):
        from evals.classification import Classifier

        self.classifier = Classifier(context.artifacts["model"])

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        return self.classifier(list(model_input))


# recipes whose package is a whole scoring model with its own pyfunc entry point (not a generator)
_SCORERS = {"reward": "pyfunc_reward.py", "classify": "pyfunc_classifier.py"}


def _module_file(name: str) -> Path | None:
    path = _ROOT.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imports(name: str, file: Path) -> set[str]:
    """Every module `file` imports, at the top or inside functions (`from a import b` also yields `a.b`)."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def _closure(entry: str = _ENTRY) -> tuple[list[str], set[str]]:
    """(this project's modules that `entry` needs, with their parent packages; top-level names of everything else
    they import). Read from the source, so a module imported on use counts as much as one imported at the top."""
    seen: dict[str, Path] = {}
    third_party: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        top = name.partition(".")[0]
        if top not in _LOCAL:
            third_party.add(top)
            continue
        file = _module_file(name)
        if file is None:  # `from pkg import function`: the name is not a module
            continue
        seen[name] = file
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_imports(name, file))
    third_party -= set(sys.stdlib_module_names) | {"__future__"}
    return sorted(seen), third_party


def shipped_modules() -> list[str]:
    """The tuneforge modules a saved model carries: the pyfunc's load/predict path and nothing of the pipeline."""
    return _closure()[0]


def _distribution(module: str, provided_by: dict[str, list[str]]) -> str | None:
    names = provided_by.get(module) or []
    for dist in names:  # `mlflow` is provided by mlflow, mlflow-skinny and mlflow-tracing: take mlflow itself
        if dist.lower().replace("_", "-") == module.lower().replace("_", "-"):
            return dist
    return names[0] if names else None


def pinned_requirements() -> list[str]:
    """`package==installed version` for mlflow and every third-party package the shipped code imports.

    A local version label (torch 2.13.0+cpu) is dropped, as MLflow itself does, so pip can install it from PyPI."""
    provided_by = importlib.metadata.packages_distributions()
    dists = {_distribution(m, provided_by) for m in _closure()[1] | {"mlflow"}} - {None}
    return sorted(f"{d}=={importlib.metadata.version(d).split('+')[0]}" for d in dists)


def _copy_code(dst: Path) -> list[str]:
    """Copy the shipped modules into `dst` (package layout kept); the top-level folders, for `code_paths`."""
    for name in shipped_modules():
        src = _module_file(name)
        target = dst / src.relative_to(_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return sorted(str(p) for p in dst.iterdir())


def save_pyfunc(path, weights_dir, tokenizer_dir, base: ModelRef, full_weights: bool, recipe: str = "sft") -> None:
    """An adapter is stored with a reference to its base (`base.hub_id`: portable); full-weight methods, reward
    models and classifiers store the whole model. Either way the model carries the code that loads it."""
    with tempfile.TemporaryDirectory() as code_dir:
        common = {"code_paths": _copy_code(Path(code_dir)), "pip_requirements": pinned_requirements()}
        if recipe in _SCORERS:
            mlflow.pyfunc.save_model(
                path=str(path), python_model=str(Path(__file__).with_name(_SCORERS[recipe])),
                artifacts={"model": str(weights_dir)}, **common)
            return
        mlflow.pyfunc.save_model(
            path=str(path), python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model" if full_weights else "adapter": str(weights_dir), "tokenizer": str(tokenizer_dir)},
            model_config={"base_model": base.hub_id, "dtype": base.dtype,
                          "trust_remote_code": base.trust_remote_code, "max_new_tokens": 128},
            **common,
        )
