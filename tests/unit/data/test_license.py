import json

import pytest

from tasks.data.config import LicenseConfig, SourceConfig
from tasks.data.errors import LicenseBlocked
from tasks.data.license import canonical_spdx, card_license, check_licenses, decide


def _src(path, license=None, name="s"):
    return SourceConfig(name=name, path=str(path), license=license)


def test_hub_style_ids_are_spelled_as_spdx():
    assert [canonical_spdx(x) for x in ["mit", "apache-2.0", "cc-by-nc-4.0", "odc-by", " CC0-1.0 ", "weird-1"]] == [
        "MIT", "Apache-2.0", "CC-BY-NC-4.0", "ODC-By-1.0", "CC0-1.0", "weird-1"]  # fmt: skip


def test_license_is_read_from_readme_front_matter_or_dataset_info(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "README.md").write_text("---\nlicense: cc-by-sa-4.0\nlanguage: [en]\n---\n# Data\n")
    (tmp_path / "a" / "train.jsonl").write_text("{}\n")
    assert card_license(tmp_path / "a" / "train.jsonl") == ("cc-by-sa-4.0", str(tmp_path / "a" / "README.md"))
    (tmp_path / "hf" / "train").mkdir(parents=True)
    (tmp_path / "hf" / "dataset_dict.json").write_text('{"splits": ["train"]}')
    (tmp_path / "hf" / "train" / "dataset_info.json").write_text(json.dumps({"license": "apache-2.0"}))
    assert card_license(tmp_path / "hf")[0] == "apache-2.0"
    d = decide(_src(tmp_path / "hf"), LicenseConfig())
    assert (d["license"], d["decision"], d["from"]) == ("Apache-2.0", "allowed", str(tmp_path / "hf/train/dataset_info.json"))


def test_nc_blocks_under_commercial_and_passes_under_research(tmp_path):
    src = _src(tmp_path, "CC-BY-NC-4.0", name="nc_set")
    with pytest.raises(LicenseBlocked, match=r"source 'nc_set' has license 'CC-BY-NC-4.0'.*not allowed by policy 'commercial'"):
        check_licenses([_src(tmp_path, "MIT", name="ok"), src], LicenseConfig())
    (d,) = check_licenses([src], LicenseConfig(policy="research"))
    assert d["decision"] == "allowed" and d["policy"] == "research"


def test_unknown_blocks_unless_allowed_and_block_list_wins(tmp_path):
    with pytest.raises(LicenseBlocked, match="'unknown'"):
        check_licenses([_src(tmp_path)], LicenseConfig())
    assert check_licenses([_src(tmp_path)], LicenseConfig(allow_unknown=True))[0]["license"] == "unknown"
    with pytest.raises(LicenseBlocked, match="'MIT'"):
        check_licenses([_src(tmp_path, "mit")], LicenseConfig(block=["MIT"]))
    assert check_licenses([_src(tmp_path, "LicenseRef-internal")], LicenseConfig(allow=["LicenseRef-internal"]))
