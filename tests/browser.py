"""Checks in a real browser: what a person opening the MLflow UI, the Prefect UI or the run report actually sees.

API calls can say a run exists while its page is blank (a UI route that moved, a chart that never draws, a report
whose images do not decode), so these checks drive Debian's `chromium` headless through Playwright and assert on
rendered elements: a plotted line, an alias tag, a state badge, a decoded image. Playwright never downloads a
browser here: it launches `/usr/bin/chromium` by path (`apt-get install chromium`), and without it, or without the
`playwright` package, the test skips with the reason.

Every check waits on real selectors (Playwright's `expect`, which retries until its timeout), saves a full-page
screenshot per step under `runs/test-artifacts/screenshots/<test name>/` (the folder above `screenshots/` is
`$TUNEFORGE_TEST_ARTIFACTS` when set), and, when something is missing, one more named `NN-FAILED-<step>.png` before
it raises `AssertionError`. The signatures take plain URLs, ids, names and paths so the same checks run against the
test servers here and against a real pipeline run's servers.

UI facts they rely on (MLflow 3.17.2, Prefect 3.8.8), read from the servers' JS bundles:
- MLflow: hash routes `#/experiments`, `#/experiments/<id>/runs[/<run id>[/model-metrics]]`, `#/models/<name>`; a
  `?workflowType=machine_learning` query opens the model-training pages (`tasks.tracking.ui_url`). Charts are Plotly
  (`path.js-line`) in cards `[data-testid=experiment-view-compare-runs-card]` titled by the metric; aliases are tags
  titled by the alias in `[data-testid=model-version-table]`.
- Prefect: `/runs/flow-run/<id>` is the V1 UI (the link `flows.run.run_links` writes); the heading's state badge,
  a "Task Runs" tab listing `.task-run-list-item`s named `<task name>-<suffix>`, each with its own state badge.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "runs" / "test-artifacts"
LOAD_TIMEOUT_MS = 60_000  # a page's data: a cold MLflow page takes ~8 s on two busy cores, a real run's has more
TIMEOUT_MS = 30_000  # a named thing once its page has loaded (the checks' `timeout_ms`; negative tests shorten it)
VIEWPORT = {"width": 1400, "height": 900}
ML_WORKFLOW = "workflowType=machine_learning"  # tasks.tracking.UI_WORKFLOW: Runs and charts, not GenAI traces


def artifacts_dir() -> Path:
    """Where test artifacts go: `$TUNEFORGE_TEST_ARTIFACTS`, else `runs/test-artifacts` in the checkout."""
    return Path(os.environ.get("TUNEFORGE_TEST_ARTIFACTS") or ARTIFACTS)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "shot"


class Screenshots:
    """Numbered full-page PNGs of one test, in the order taken (`01-experiment.png`, `02-run.png`, ...)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.taken: list[Path] = []

    def __call__(self, page, name: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{len(self.taken) + 1:02d}-{_slug(name)}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


def screenshots_for(test_name: str) -> Screenshots:
    """A fresh screenshot folder for `test_name` (last run's PNGs removed, so the folder shows one run)."""
    folder = artifacts_dir() / "screenshots" / _slug(test_name)
    shutil.rmtree(folder, ignore_errors=True)
    return Screenshots(folder)


@contextmanager
def browser_page(viewport: dict | None = None) -> Iterator:
    """A blank page in headless Debian chromium; skips the calling test when chromium or playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: browser checks need Debian's chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; no `playwright install`)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport=viewport or VIEWPORT)
            page.set_default_timeout(LOAD_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


@pytest.fixture()
def page():
    """`browser_page()` as a fixture; import it into a test module (`from tests.browser import page, shots`)."""
    with browser_page() as p:
        yield p


@pytest.fixture()
def shots(request) -> Screenshots:
    """This test's screenshot folder (see `screenshots_for`)."""
    return screenshots_for(request.node.name)


def _see(page, shots: Screenshots, step: str, what: str, assertion) -> None:
    """Run a Playwright `expect(...)` assertion; if it fails, keep a screenshot and say what was missing where."""
    try:
        assertion()
    except AssertionError as err:
        path = shots(page, f"FAILED-{step}")
        raise AssertionError(f"{what}, not shown at {page.url} (screenshot {path})\n{err}") from None


# --- MLflow ---------------------------------------------------------------------------------------------------------


def check_mlflow_ui(page, mlflow_url: str, experiment_name: str, run_id: str, metric: str, model_name: str,
                    aliases: Iterable[str], shots: Screenshots, *, timeout_ms: float = TIMEOUT_MS) -> None:
    """The experiment is listed and lists the run; the run's page names it; its Model metrics tab draws a line for
    `metric`; the registered model's page shows the model and every alias in `aliases`. `timeout_ms`: how long each
    asserted thing may take to show once its page has loaded (page loads get `LOAD_TIMEOUT_MS`)."""
    from playwright.sync_api import expect

    base = mlflow_url.rstrip("/")
    load, t = {"timeout": LOAD_TIMEOUT_MS}, {"timeout": timeout_ms}

    page.goto(f"{base}/#/experiments?{ML_WORKFLOW}")
    search = page.get_by_placeholder("Search experiments")  # the list pages at 25: a real server has more
    _see(page, shots, "experiments", "the experiment list", lambda: expect(search).to_be_visible(**load))
    search.fill(experiment_name)
    search.press("Enter")
    link = page.get_by_test_id("experiment-list-item-link").and_(page.get_by_title(experiment_name, exact=True))
    _see(page, shots, "experiments", f"experiment {experiment_name!r} in the experiment list",
         lambda: expect(link).to_be_visible(**load))
    shots(page, "experiments")
    experiment_id = re.search(r"experiments/([^/?]+)", link.get_attribute("href")).group(1)

    page.goto(f"{base}/#/experiments/{experiment_id}/runs?{ML_WORKFLOW}")  # a click would open GenAI's overview
    run_link = page.locator(f'a[href*="/runs/{run_id}"]').first
    _see(page, shots, "experiment", f"run {run_id} on experiment {experiment_name!r}'s Runs page",
         lambda: expect(run_link).to_be_visible(**load))
    shots(page, "experiment")

    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{ML_WORKFLOW}")
    _see(page, shots, "run", f"run id {run_id} on the run's overview",
         lambda: expect(page.get_by_test_id("key-value-Run ID")).to_contain_text(run_id, **load))
    shots(page, "run")

    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics?{ML_WORKFLOW}")
    cards = page.get_by_test_id("experiment-view-compare-runs-card")
    _see(page, shots, "metric-chart", "any metric chart", lambda: expect(cards.first).to_be_visible(**load))
    # `train/loss` is drawn in the "train" section under the title "loss"
    names = "|".join(re.escape(name).replace("/", r"\/") for name in (metric, metric.rsplit("/", 1)[-1]))
    title = re.compile(rf"^({names})$")  # Playwright passes it on as /.../: the slash is escaped
    card = cards.filter(has=page.get_by_role("heading", name=title))
    for _ in range(60):  # charts out of view are not drawn at all: scroll down until the card exists
        if card.count():
            break
        page.mouse.move(600, 600)
        page.mouse.wheel(0, 700)
        page.wait_for_timeout(250)
    card = card.first  # `loss` may also title another section's chart; the first is the top-level train/ one
    _see(page, shots, "metric-chart", f"a chart titled {metric!r}", lambda: expect(card).to_be_visible(**t))
    card.scroll_into_view_if_needed()  # charts below the fold may wait to draw until seen
    line = card.locator(".js-plotly-plot path.js-line").first  # Plotly's trace: `M x,y L x,y ...`
    _see(page, shots, "metric-chart", f"a plotted line (two or more points) in the {metric!r} chart",
         lambda: expect(line).to_have_attribute("d", re.compile(r"^M[-\d.e]+,[-\d.e]+L"), **load))
    shots(page, f"chart-{metric}")

    page.goto(f"{base}/#/models/{model_name}?{ML_WORKFLOW}")
    _see(page, shots, "model", f"registered model {model_name!r} as the page title",
         lambda: expect(page.get_by_role("heading", name=model_name, exact=True)).to_be_visible(**load))
    versions = page.get_by_test_id("model-version-table")
    _see(page, shots, "model", f"{model_name!r}'s versions",
         lambda: expect(versions.locator('a[href*="/versions/"]').first).to_be_visible(**load))
    for alias in aliases:
        tag = versions.get_by_title(alias, exact=True)
        _see(page, shots, "model", f"alias @{alias} in {model_name!r}'s version table",
             lambda: expect(tag).to_be_visible(**t))
    shots(page, "model")


# --- Prefect --------------------------------------------------------------------------------------------------------


def check_prefect_ui(page, prefect_ui_url: str, flow_run_id: str, task_names: Iterable[str], shots: Screenshots,
                     *, state: str = "Completed", timeout_ms: float = TIMEOUT_MS) -> None:
    """The flow run's page shows its `state`, and its Task Runs tab lists a run of every task in `task_names`
    (named `<task name>-<suffix>`), each in `state` too. `timeout_ms`: as in `check_mlflow_ui`."""
    from playwright.sync_api import expect

    load, t = {"timeout": LOAD_TIMEOUT_MS}, {"timeout": timeout_ms}
    page.goto(f"{prefect_ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}")
    badge = page.locator(".page-heading-flow-run__meta .state-badge")
    _see(page, shots, "flow-run", f"flow run {flow_run_id}'s state", lambda: expect(badge).to_be_visible(**load))
    _see(page, shots, "flow-run", f"flow run {flow_run_id} in state {state}",
         lambda: expect(badge).to_have_text(state, **t))
    shots(page, "flow-run")

    page.locator("li.p-tab", has_text=re.compile(r"^\s*Task Runs\s*$")).click()
    items = page.locator(".task-run-list-item")
    _see(page, shots, "task-runs", "the Task Runs tab's list", lambda: expect(items.first).to_be_visible(**load))
    search = page.get_by_placeholder("Search by run name")  # the list pages and virtualises: search each name
    for name in task_names:
        search.fill(name)
        run_name = re.compile(rf"^\s*{re.escape(name)}-\w+\s*$")
        item = items.filter(has=page.locator('a[href*="/runs/task-run/"]', has_text=run_name)).first
        _see(page, shots, f"task-{name}", f"a run of task {name!r} in state {state}",
             lambda: expect(item.locator(".state-badge")).to_have_text(state, **t))
    search.fill("")
    _see(page, shots, "task-runs", "the Task Runs tab's list", lambda: expect(items.first).to_be_visible(**load))
    shots(page, "task-runs")


# --- The run report -------------------------------------------------------------------------------------------------

_IMAGES = "() => Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, " \
          "height: i.naturalHeight, shown: i.getBoundingClientRect().width}))"


def check_report(page, html_path: str | Path, shots: Screenshots, *, min_plots: int = 1,
                 timeout_ms: float = TIMEOUT_MS) -> None:
    """The report (`evals.report.write_report`: `<run dir>/package/report/report.html`) renders its title and
    Training curves, every image decodes (naturalWidth > 0) and is laid out, there are at least `min_plots` of them,
    and nothing logs a console error, throws, or fails to load."""
    from playwright.sync_api import expect

    errors: list[str] = []

    def on_console(msg):
        if msg.type == "error":
            errors.append(f"console: {msg.text}")

    def on_error(exc):
        errors.append(f"page error: {exc}")

    def on_failed(request):
        errors.append(f"failed to load {request.url[:120]}: {request.failure}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    page.on("requestfailed", on_failed)
    try:
        page.goto(Path(html_path).resolve().as_uri())
        t = {"timeout": timeout_ms}
        _see(page, shots, "report", "the report's title", lambda: expect(page.locator("h1")).to_be_visible(**t))
        curves = page.get_by_role("heading", name="Training curves", exact=True)
        _see(page, shots, "report", "the Training curves section", lambda: expect(curves).to_be_visible(**t))
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=timeout_ms)
        images = page.evaluate(_IMAGES)
        shots(page, "report")
    finally:
        page.remove_listener("console", on_console)
        page.remove_listener("pageerror", on_error)
        page.remove_listener("requestfailed", on_failed)
    broken = [i["alt"] for i in images if not (i["width"] > 0 and i["height"] > 0 and i["shown"] > 0)]
    assert len(images) >= min_plots, f"{html_path}: {len(images)} images, expected at least {min_plots} plots"
    assert not broken, f"{html_path}: images that did not load or are not shown: {broken}"
    assert not errors, f"{html_path}: {errors}"
