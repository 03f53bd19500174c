"""manifest.json for a packaged model folder: sha256 and size of every file, to verify after any copy.

Verification reports every mismatch at once (changed, missing, unexpected files) so one failed
upload or a tampered file is named, not just "checksum failed".
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


class ManifestMismatch(ValueError):
    """The folder no longer matches its manifest; attributes list the offending relative paths."""

    def __init__(self, changed: list[str], missing: list[str], unexpected: list[str]):
        self.changed, self.missing, self.unexpected = changed, missing, unexpected
        parts = [f"{label}: {', '.join(names)}" for label, names in
                 (("changed", changed), ("missing", missing), ("unexpected", unexpected)) if names]
        super().__init__("manifest mismatch; " + "; ".join(parts))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    """Relative POSIX paths of all files under `folder`, sorted, without the root manifest."""
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p != folder / MANIFEST
    )


def write_manifest(folder: Path) -> Path:
    """Write `folder/manifest.json` listing every file (recursively) with its sha256 and size."""
    folder = Path(folder)
    files = [
        {"path": rel, "sha256": sha256_file(folder / rel), "size": (folder / rel).stat().st_size}
        for rel in _files(folder)
    ]
    path = folder / MANIFEST
    path.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=2) + "\n", encoding="utf-8")
    return path


def verify_manifest(folder: Path) -> None:
    """Raise `ManifestMismatch` naming every changed, missing or unexpected file; return None if all match."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {folder}")
    expected = {f["path"]: f for f in json.loads(manifest_path.read_text(encoding="utf-8"))["files"]}
    present = set(_files(folder))
    missing = sorted(set(expected) - present)
    unexpected = sorted(present - set(expected))
    changed = sorted(
        rel for rel in set(expected) & present
        if (folder / rel).stat().st_size != expected[rel]["size"] or sha256_file(folder / rel) != expected[rel]["sha256"]
    )
    if changed or missing or unexpected:
        raise ManifestMismatch(changed, missing, unexpected)
