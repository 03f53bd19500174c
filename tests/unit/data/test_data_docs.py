"""Data docs that work offline and as single files (MLflow shows each HTML artifact alone, with no base URL)."""
import re
from pathlib import Path

from lxml import html

from tasks.data.config import ValidationConfig
from tasks.data.validate import offline_data_docs, validate_rows
from tests.unit.data.test_validate import _rows, frame

REMOTE = re.compile(r"^\s*(?:https?:)?//", re.I)


def _local_target(page: Path, ref: str) -> Path | None:
    """The file a relative href/src points at, or None for anchors, remote links and other schemes."""
    ref = ref.split("#")[0].split("?")[0]
    if not ref or REMOTE.match(ref) or re.match(r"^[a-z][a-z0-9+.-]*:", ref, re.I):
        return None
    return (page.parent / ref).resolve()


def test_data_docs_render_offline_and_every_relative_link_resolves(tmp_path):
    rows = _rows()
    _, index = validate_rows(frame(rows, [6] * len(rows), "sft"), ValidationConfig(), tmp_path)
    docs = index.parent
    offline_data_docs(docs)  # a second pass changes nothing
    pages = sorted(docs.rglob("*.html"))
    assert len(pages) == 3  # index, the suite, the validation result
    targets = set()
    for page in pages:
        doc = html.parse(str(page)).getroot()
        assert not doc.xpath("//script"), page  # no CDN scripts, and no inline ones that needed them
        for link in doc.xpath("//link[@href]"):
            assert not REMOTE.match(link.get("href")), (page, link.get("href"))
        for el in doc.xpath("//img[@src]"):
            assert not REMOTE.match(el.get("src")), (page, el.get("src"))
        for style in doc.xpath("//style/text() | //@style"):
            assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", style), page
        assert len(doc.xpath("//style[@id='tuneforge-offline-css']")) == 1
        for el in doc.xpath("//*[@href or @src]"):
            target = _local_target(page, el.get("href") or el.get("src"))
            if target is not None:
                assert target.is_file(), (page, el.get("href") or el.get("src"))
                targets.add(target)
    assert set(p.resolve() for p in pages) - {index.resolve()} <= targets  # the index's tables link every page
    index_doc = html.parse(str(index)).getroot()
    status = index_doc.xpath("//table[contains(@class, 'validation-results')]//tbody/tr/td[1]//text()")
    assert [s.strip() for s in status if s.strip()] == ["Success"]
    assert not (docs / "static").exists()  # 4 MB of images and fonts nothing references any more
