"""Validate the kept rows with a great-expectations 1.x suite, run as a Checkpoint that also builds data docs.

Nested rows are flattened, as they stream past, into one pandas frame of scalar columns (roles as a
comma string, shortest field length, token count, dedup key, reply lengths) so every check is a stock
vectorised expectation.
The context is ephemeral (in-memory stores) with one filesystem data-docs site under the run folder, made
self-contained afterwards (`offline_data_docs`): no CDN stylesheets or scripts, static tables, working links.
"""
import ast
import html
import logging
import re
import shutil
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
    if docs_dir is not None and docs_dir.is_dir():
        offline_data_docs(docs_dir)

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


# Enough of Bootstrap for GX's markup to read well without it; Font Awesome's few icons GX uses, as characters.
OFFLINE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; font-size: 14px;
       line-height: 1.45; color: #212529; margin: 0; padding: 0 16px; }
a { color: #0b63c4; }
table { border-collapse: collapse; margin: 8px 0; max-width: 100%; }
th, td { border: 1px solid #dee2e6; padding: 4px 8px; text-align: left; vertical-align: top; }
thead th { background: #f1f3f5; }
.col-12 { width: 100%; }
.d-none { display: none; }
@media (min-width: 768px) {
  .row { display: flex; flex-wrap: wrap; }
  .col-md-2 { flex: 0 0 16.66%; max-width: 16.66%; }
  .col-md-10 { flex: 0 0 83.33%; max-width: 83.33%; }
  .d-md-block { display: block !important; }
  .d-md-inline-flex { display: inline-flex !important; }
}
.badge { display: inline-block; padding: 1px 6px; border-radius: 4px; background: #6c757d; color: #fff; font-size: 85%; }
.alert { padding: 8px 12px; border: 1px solid #d6d8db; border-radius: 4px; background: #f1f3f5; margin: 8px 0; }
.card { border: 1px solid #dee2e6; border-radius: 4px; margin-bottom: 12px; }
.card-header { background: #f7f7f7; padding: 6px 10px; border-bottom: 1px solid #dee2e6; }
.card-body { padding: 8px 10px; }
.nav, .breadcrumb { list-style: none; padding: 0; margin: 0; }
.breadcrumb { display: flex; gap: 8px; }
.nav-tabs { display: flex; gap: 16px; border-bottom: 1px solid #dee2e6; }
.nav-link { display: block; padding: 3px 6px; }
.navbar { padding: 8px 0; border-bottom: 1px solid #dee2e6; background: #fff; }
.tab-pane { margin-top: 12px; }
.text-success, .ge-status-Success { color: #1e7e34; }
.text-danger, .ge-status-Failed { color: #c82333; }
.fas { font-style: normal; }
.fa-check-circle::before { content: "\\2714"; }
.fa-times::before { content: "\\2718"; }
.fa-exclamation-triangle::before { content: "\\26A0"; }
.fa-question-circle::before { content: "?"; }
.fa-comment::before { content: "\\2026"; }
"""

_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.I)
_REMOTE_URL_IN_CSS = re.compile(r"url\(\s*['\"]?\s*(?:https?:)?//[^)]*\)", re.I)
_TABLE_SCRIPT = re.compile(r"\$\('#([\w-]+)'\)\.bootstrapTable\(")
_TABLE_COLUMNS = re.compile(r"columns:\s*(\[.*?\]),\s*\n\s*data:", re.S)
_TABLE_ROWS = re.compile(r"data:\s*(\[.*?\]),\s*\n\s*toolbar:", re.S)


def offline_data_docs(docs_dir: Path) -> None:
    """Make GX's data docs readable with no network and as single files.

    GX 1.x pages load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from CDNs, fill the index's tables
    from JavaScript, and link the nested pages' favicon one folder short. MLflow shows an HTML artifact alone, in a
    sandboxed frame with no base URL, so a page must stand on its own: every script and remote stylesheet goes,
    `OFFLINE_CSS` is inlined, the index's tables are written out as HTML (each row linking to its page), the
    controls that need jQuery (filters, "Failed only") go, and the unused `static/` folder (4 MB of images and
    fonts) is removed. The pages' links between each other are relative and all resolve in the folder.
    Idempotent; a page GX changes beyond recognition keeps its content, only its tables may stay empty."""
    from lxml import html as lhtml

    pages = sorted(Path(docs_dir).rglob("*.html"))
    for page in pages:
        doc = lhtml.document_fromstring(page.read_text(encoding="utf-8"))
        for script in doc.xpath("//script[not(@src)]"):
            if (found := _TABLE_SCRIPT.search(script.text or "")) is not None:
                _static_table(doc, found.group(1), script.text, lhtml)
        for el in doc.xpath("//script"):
            el.drop_tree()
        for el in doc.xpath("//link"):  # remote stylesheets; icons, whose nested pages' paths GX gets wrong
            if _REMOTE.match(el.get("href") or "") or "icon" in (el.get("rel") or "").lower():
                el.drop_tree()
        for img in doc.xpath("//img"):
            if _REMOTE.match(img.get("src") or ""):
                img.drop_tree()
        for el in doc.xpath("//*[contains(concat(' ', normalize-space(@class), ' '), ' btn-group-toggle ')]"):
            card = next((a for a in el.iterancestors("div") if "card" in (a.get("class") or "").split()), el)
            card.drop_tree()  # "Show all / Failed only": a jQuery filter
        for el in doc.xpath("//*[@id]"):
            if el.get("id").endswith("-table-toolbar"):  # bootstrap-table's "Clear filters"
                el.drop_tree()
        for style in doc.xpath("//style"):
            style.text = _REMOTE_URL_IN_CSS.sub("none", style.text or "")
        for el in doc.xpath("//*[@style]"):
            el.set("style", _REMOTE_URL_IN_CSS.sub("none", el.get("style")))
        head = doc.find("head")
        if head is not None and doc.get_element_by_id("tuneforge-offline-css", None) is None:
            css = lhtml.Element("style", id="tuneforge-offline-css")
            css.text = OFFLINE_CSS
            head.append(css)
        page.write_text(lhtml.tostring(doc, doctype="<!DOCTYPE html>", encoding="unicode", method="html"),
                        encoding="utf-8")
    static = Path(docs_dir) / "static"
    if static.is_dir() and not any("static/" in p.read_text(encoding="utf-8") for p in pages):
        shutil.rmtree(static)


def _static_table(doc, table_id: str, script: str, lhtml) -> None:
    """Write out the rows bootstrap-table would have drawn from `script` into the empty <table id=table_id>."""
    table = doc.get_element_by_id(table_id, None)
    columns, rows = _TABLE_COLUMNS.search(script), _TABLE_ROWS.search(script)
    if table is None or columns is None or rows is None:
        return
    try:
        columns, rows = ast.literal_eval(columns.group(1)), ast.literal_eval(rows.group(1))
    except (ValueError, SyntaxError):
        logging.getLogger("tuneforge").warning(f"data docs: table {table_id} left empty (unexpected GX markup)")
        return
    rows = sorted(rows, key=lambda r: r.get("_run_time_sort", 0), reverse=True)
    head = "".join(f"<th>{html.escape(str(c.get('title', c['field'])))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for i, col in enumerate(columns):
            value = str(row.get(col["field"], ""))
            if col["field"] == "validation_success" and "_validation_success_text" in row:
                status = html.escape(str(row["_validation_success_text"]))
                value = f'<span class="ge-status-{status}">{status}</span>'
            if i == 0 and row.get("_table_row_link_path") and "<a " not in value:
                value = f'<a href="{html.escape(row["_table_row_link_path"])}">{value}</a>'
            cells.append(f"<td>{value}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    static = lhtml.fragment_fromstring(
        f'<table id="{html.escape(table_id)}" class="{html.escape(table.get("class") or "")}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    static.tail = table.tail
    table.getparent().replace(table, static)
