"""License gate: resolve each source's SPDX id and check it against the policy before any data is read."""
import json
from pathlib import Path
from typing import Any

import yaml

from tasks.data.config import LicenseConfig, SourceConfig
from tasks.data.errors import LicenseBlocked

COMMERCIAL = [
    "MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Clear", "ISC", "Zlib", "Unlicense",
    "CC0-1.0", "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "PDDL-1.0", "ODC-By-1.0", "ODbL-1.0",
    "CDLA-Permissive-1.0", "CDLA-Permissive-2.0", "CDLA-Sharing-1.0", "MPL-2.0", "Python-2.0",
]  # fmt: skip
NON_COMMERCIAL = [
    "CC-BY-NC-2.0", "CC-BY-NC-3.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-2.0", "CC-BY-NC-SA-3.0", "CC-BY-NC-SA-4.0",
    "CC-BY-NC-ND-3.0", "CC-BY-NC-ND-4.0", "CC-BY-ND-4.0",
]  # fmt: skip
POLICIES = {"commercial": COMMERCIAL, "research": COMMERCIAL + NON_COMMERCIAL}
# Hub cards use lower-case ids and a few aliases; map them to SPDX spelling.
_ALIASES = {"odc-by": "ODC-By-1.0", "odbl": "ODbL-1.0", "cc0": "CC0-1.0", "apache 2.0": "Apache-2.0", "bsd": "BSD-3-Clause"}
_CANONICAL = {s.lower(): s for s in COMMERCIAL + NON_COMMERCIAL} | _ALIASES
UNKNOWN = "unknown"


def canonical_spdx(license_id: str) -> str:
    """SPDX spelling of a (possibly lower-case, hub-style) license id; unknown ids are returned stripped."""
    return _CANONICAL.get(license_id.strip().lower(), license_id.strip())


def card_license(path: Path, split: str = "train") -> tuple[str | None, str | None]:
    """(license, where found) from README.md YAML front matter or dataset_info.json beside the data
    (for a DatasetDict saved to disk, also the split's own dataset_info.json)."""
    folder = path if path.is_dir() else path.parent
    readme = folder / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            end = text.find("\n---", 3)
            meta = yaml.safe_load(text[3:end]) if end > 0 else None
            found = meta.get("license") if isinstance(meta, dict) else None
            if isinstance(found, list) and found:
                found = found[0]
            if isinstance(found, str) and found.strip():
                return found, str(readme)
    for info in (folder / "dataset_info.json", folder / split / "dataset_info.json"):
        if info.is_file():
            found = json.loads(info.read_text(encoding="utf-8")).get("license")
            if isinstance(found, str) and found.strip():
                return found, str(info)
    return None, None


def hub_card_license(name: str) -> tuple[str | None, str | None]:
    """License from a hub dataset card (needs network; offline it is simply unknown)."""
    try:
        from huggingface_hub import DatasetCard

        found = DatasetCard.load(name).data.to_dict().get("license")
    except Exception:  # offline, gated, unknown repo: the gate then treats the license as unknown
        return None, None
    found = found[0] if isinstance(found, list) and found else found
    return (found, f"hub:{name}/README.md") if isinstance(found, str) and found.strip() else (None, None)


def decide(src: SourceConfig, cfg: LicenseConfig) -> dict[str, Any]:
    """The license decision for one source, as recorded in the report."""
    if src.license is not None:
        raw, origin = src.license, "config"
    else:
        path = Path(src.path)
        raw, origin = card_license(path, src.split) if path.exists() else hub_card_license(src.path)
    spdx = canonical_spdx(raw) if raw else UNKNOWN
    allowed_ids = {canonical_spdx(x) for x in POLICIES[cfg.policy] + cfg.allow} - {canonical_spdx(x) for x in cfg.block}
    if spdx == UNKNOWN:
        allowed = cfg.allow_unknown
        reason = "no license in config or dataset card" + ("; allowed by allow_unknown" if allowed else "")
    else:
        allowed = spdx in allowed_ids
        reason = f"{spdx} is {'allowed' if allowed else 'not allowed'} by policy {cfg.policy!r}"
    return {"source": src.name, "license": spdx, "from": origin or "none", "policy": cfg.policy,
            "decision": "allowed" if allowed else "blocked", "reason": reason}  # fmt: skip


def check_licenses(sources: list[SourceConfig], cfg: LicenseConfig) -> list[dict[str, Any]]:
    """Decisions for all sources; raises LicenseBlocked naming every blocked source and its license."""
    decisions = [decide(s, cfg) for s in sources]
    blocked = [d for d in decisions if d["decision"] == "blocked"]
    if blocked:
        names = "; ".join(f"source {d['source']!r} has license {d['license']!r} ({d['reason']})" for d in blocked)
        raise LicenseBlocked(f"license gate blocked {len(blocked)} source(s): {names}")
    return decisions
