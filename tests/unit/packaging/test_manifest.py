import hashlib
import json

import pytest

from tasks.packaging.manifest import ManifestMismatch, verify_manifest, write_manifest


@pytest.fixture()
def package(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00" * 1000)
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"r": 8}')
    (tmp_path / "README.md").write_text("model card")
    return tmp_path


def test_manifest_lists_every_file_recursively_sorted_without_itself(package):
    path = write_manifest(package)
    files = json.loads(path.read_text())["files"]
    assert [f["path"] for f in files] == ["README.md", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"]
    by_path = {f["path"]: f for f in files}
    assert by_path["adapter/adapter_model.safetensors"]["size"] == 1000
    assert by_path["README.md"]["sha256"] == hashlib.sha256(b"model card").hexdigest()
    write_manifest(package)  # rewriting does not list the old manifest
    assert len(json.loads(path.read_text())["files"]) == 3
    verify_manifest(package)


def test_verify_names_modified_file_even_with_same_size(package):
    write_manifest(package)
    (package / "adapter" / "adapter_model.safetensors").write_bytes(b"\x01" + b"\x00" * 999)
    with pytest.raises(ManifestMismatch, match="changed: adapter/adapter_model.safetensors") as err:
        verify_manifest(package)
    assert err.value.changed == ["adapter/adapter_model.safetensors"]
    assert err.value.missing == [] and err.value.unexpected == []


def test_verify_names_missing_and_unexpected_files(package):
    write_manifest(package)
    (package / "README.md").unlink()
    (package / "adapter" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ManifestMismatch) as err:
        verify_manifest(package)
    assert err.value.missing == ["README.md"] and err.value.unexpected == ["adapter/extra.bin"]
    assert "missing: README.md" in str(err.value) and "unexpected: adapter/extra.bin" in str(err.value)


def test_verify_without_manifest_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        verify_manifest(tmp_path)
