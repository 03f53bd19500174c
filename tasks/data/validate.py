"""Validate the kept rows with a great-expectations 1.x suite, run as a Checkpoint that also builds data docs.

Nested rows are flattened, as they stream past, into one pandas frame of scalar columns (roles as a
comma string, shortest field length, token count, dedup key, reply lengths) so every check is a stock
vectorised expectation.
The context is ephemeral (in-memory stores) with one filesystem data-docs site under the run folder.
"""
import logging
import sys
from pathlib import Path
from typing import Any

from tasks.data.config import ValidationConfig
from tasks.data.errors import ValidationFailed
from tasks.data.text import fields

ROLE_PATTERNS = {
    "sft": r"^(?:system,)?(?:user,assistant,)*user,assistant$",
    "kto": r"^(?:system,)?(?:user,assistant,)*user,assistant$",
    "preference": r"^(?:system,)?(?:user,assistant,)*user$",
    "text": r"^$",
    "classification": r"^$",
}
EXTRA_COLUMNS = {"sft": [], "kto": ["label"], "preference": ["chosen_chars", "rejected_chars"], "text": ["text_chars"],
                 "classification": ["text_chars", "label"]}  # fmt: skip


class ValidationFrame:
    """One scalar-column row per kept data row, filled as rows stream past: what the expectations look at.

    Only scalars are held (lengths, not texts; interned role strings), so a million rows cost
    tens of megabytes, not the rows themselves.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.columns: dict[str, list] = {c: [] for c in ("id", "source", "roles", "min_field_chars", "n_tokens", "dedup_key")}
        for key in EXTRA_COLUMNS[kind]:
            self.columns[key] = []

    def __len__(self) -> int:
        return len(self.columns["id"])

    def add(self, row: dict[str, Any], n_tokens: int, dedup_key: str) -> None:
        c = self.columns
        c["id"].append(row["id"])
        c["source"].append(sys.intern(row["source"]))
        c["roles"].append(sys.intern(",".join(m["role"] for m in row["messages"])))
        c["min_field_chars"].append(min(len(t.strip()) for _, _, t in fields(row)))
        c["n_tokens"].append(n_tokens)
        c["dedup_key"].append(dedup_key)
        if "label" in c:
            c["label"].append(row.get("label"))
        for key in ("chosen", "rejected", "text"):
            if f"{key}_chars" in c:
                c[f"{key}_chars"].append(len(row[key].strip()) if isinstance(row.get(key), str) else None)

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.columns)


def suite_expectations(kind: str, sources: list[str], cfg: ValidationConfig, unique_text: bool = True) -> list:
    """The expectations, in the order they are reported."""
    import great_expectations.expectations as gxe

    exps = [
        gxe.ExpectTableColumnsToMatchSet(column_set=["id", "source", "roles", "min_field_chars", "n_tokens", "dedup_key",
                                                     *EXTRA_COLUMNS[kind]], exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeInSet(column="source", value_set=sources),
        gxe.ExpectColumnValuesToMatchRegex(column="roles", regex=ROLE_PATTERNS[kind]),
        gxe.ExpectColumnValuesToBeBetween(column="min_field_chars", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=cfg.min_tokens, max_value=cfg.max_tokens),
    ]  # fmt: skip
    if unique_text:  # only promised when exact dedup ran
        exps.append(gxe.ExpectColumnValuesToBeUnique(column="dedup_key"))
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in EXTRA_COLUMNS[kind] if c.endswith("_chars")]  # reply there
    if kind == "kto":
        exps.append(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[True, False]))
    if kind == "classification":  # a class name on every row (the text is min_field_chars' and text_chars')
        exps += [gxe.ExpectColumnValuesToNotBeNull(column="label"),
                 gxe.ExpectColumnValueLengthsToBeBetween(column="label", min_value=1)]
    return exps


def _context(docs_dir: Path | None):
    """Ephemeral context: in-memory stores, analytics off, one local data-docs site if asked for."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        sites["local_site"] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(), analytics_enabled=False,
                               data_docs_sites=sites, progress_bars=ProgressBarsConfig(globally=False))  # fmt: skip
    return gx.get_context(project_config=config, mode="ephemeral")


def validate_rows(rows: ValidationFrame, cfg: ValidationConfig, out_dir: Path,
                  unique_text: bool = True) -> tuple[dict[str, Any], Path | None]:  # fmt: skip
    """Run the suite; returns (summary for the report, data docs index.html or None). Raises ValidationFailed."""
    if not cfg.enabled:
        return {"enabled": False}, None
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    docs_dir = out_dir / "data_docs" if cfg.data_docs else None
    context = _context(docs_dir)
    asset = context.data_sources.add_pandas("prepared").add_dataframe_asset("rows")
    batch_def = asset.add_batch_definition_whole_dataframe("all")
    kind = rows.kind
    suite = context.suites.add(gx.ExpectationSuite(name=f"tuneforge_{kind}"))
    for exp in suite_expectations(kind, sorted(set(rows.columns["source"])), cfg, unique_text):
        suite.add_expectation(exp)
    vd = context.validation_definitions.add(gx.ValidationDefinition(name="prepared_rows", data=batch_def, suite=suite))
    actions = [UpdateDataDocsAction(name="data_docs")] if docs_dir is not None else []
    checkpoint = context.checkpoints.add(gx.Checkpoint(name="prepare_data", validation_definitions=[vd], actions=actions))
    result = checkpoint.run(batch_parameters={"dataframe": rows.to_pandas()})

    outcomes = []
    for run in result.run_results.values():
        for r in run.results:
            cfg_ = r.expectation_config
            outcomes.append({"expectation": cfg_.type, "column": cfg_.kwargs.get("column"), "success": bool(r.success),
                             "unexpected_count": (r.result or {}).get("unexpected_count")})  # fmt: skip
    failed = [o for o in outcomes if not o["success"]]
    if failed:
        names = "; ".join(f"{o['expectation']}({o['column'] or 'table'}): {o['unexpected_count']} unexpected" for o in failed)
        raise ValidationFailed(f"data validation failed: {names}")
    index = docs_dir / "index.html" if docs_dir is not None and (docs_dir / "index.html").exists() else None
    return {"enabled": True, "success": True, "expectations": outcomes}, index
