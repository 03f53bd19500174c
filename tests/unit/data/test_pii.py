import json

import pytest

from evals.pii_benchmark import CASES_PATH, generate_cases, score
from tasks.data.config import PiiConfig
from tasks.data.errors import DataError
from tasks.data.pii import PiiScanner, candidate_types


@pytest.fixture(scope="module")
def scanner():
    return PiiScanner(PiiConfig(names="off"))


@pytest.mark.parametrize("text, expected", [
    ("mail jane.roe@example.org now", "mail <EMAIL> now"),
    ("call +44 20 7946 0958 or (415) 555-2671", "call <PHONE> or <PHONE>"),
    ("card 4111 1111 1111 1111 ok", "card <CREDIT_CARD> ok"),
    ("IBAN DE89 3704 0044 0532 0130 00.", "IBAN <IBAN>."),
    ("ssn 536-22-1234", "ssn <US_SSN>"),
    ("hosts 192.168.1.20 and 2001:db8::7334", "hosts <IP_ADDRESS> and <IP_ADDRESS>"),
    ("password=hunter2! and key AKIAIOSFODNN7EXAMPLE", "password=<CREDENTIAL> and key <CREDENTIAL>"),
    ("Authorization: Bearer abcdefghijklmnop1234", "Authorization: Bearer <CREDENTIAL>"),
    ("token ghp_" + "a1B2" * 9 + " and sk-" + "x" * 30, "token <CREDENTIAL> and <CREDENTIAL>"),
    ("db postgres://admin:s3cr3t@db.example.com:5432/app", "db <URL_CREDENTIALS>/app"),
])  # fmt: skip
def test_each_type_is_redacted_with_its_placeholder(scanner, text, expected):
    assert scanner.redact(text)[0] == expected


@pytest.mark.parametrize("text", [
    "ISBN 978-3-16-148410-0", "version 2.14.3 on 2024-03-15", "order ORD-2024-000123 shipped", "card 4111 1111 1111 1112",
    "tracking 1Z999AA10123456784", "commit 3f9a2c1e8b7d6f5a4c3b2a1908f7e6d5c4b3a291", "SSN 000-12-3456",
    "IBAN DE00 3704 0044 0532 0130 00", "Asia is big; the token economy; password reset link", "pi is 3.14159265",
])  # fmt: skip
def test_look_alikes_are_left_alone(scanner, text):
    assert scanner.find(text) == []


def test_prefilter_skips_plain_text_and_flags_candidates():
    assert candidate_types("A plain sentence without anything special.") == set()
    assert candidate_types("write to a@b.io") == {"EMAIL"}
    assert "CREDIT_CARD" in candidate_types("4111-1111-1111-1111")


def test_per_type_actions_drop_keep_and_redact(scanner):
    cfg = PiiConfig(names="off", actions={"EMAIL": "keep", "US_SSN": "drop"})
    s = PiiScanner(cfg)
    row = {"id": "s:1", "source": "s", "messages": [{"role": "user", "content": "a@b.com 536-22-1234"},
                                                     {"role": "assistant", "content": "call +1 212 555 0199"}]}  # fmt: skip
    redacted, counts, drop = s.scan_row(row)
    assert drop is True and counts == {"US_SSN": 1, "PHONE": 1}
    assert redacted["messages"][0]["content"] == "a@b.com <US_SSN>" and row["messages"][0]["content"].endswith("1234")


def test_person_names_are_skipped_cleanly_without_a_spacy_model():
    s = PiiScanner(PiiConfig(spacy_model="not_an_installed_model"))
    assert s.notes == ["names were NOT checked: spaCy model 'not_an_installed_model' is not installed; "
                       "install a spaCy model to check them"]  # fmt: skip
    assert s.redact("Ada Lovelace wrote it")[0] == "Ada Lovelace wrote it"
    with pytest.raises(DataError, match="pii.names=required but names were NOT checked"):
        PiiScanner(PiiConfig(names="required", spacy_model="not_an_installed_model"))


def test_person_names_go_through_presidio_ner_with_a_spacy_model(tmp_path):
    """No official spaCy model is installable here: a blank pipeline with an entity ruler stands in for one."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "ada"}, {"LOWER": "lovelace"}]}])
    nlp.to_disk(tmp_path / "names_model")
    s = PiiScanner(PiiConfig(names="required", spacy_model=str(tmp_path / "names_model")))
    assert s.redact("Write to Ada Lovelace at ada@example.org")[0] == "Write to <PERSON> at <EMAIL>"
    assert s.notes == [f"names checked with spaCy model {str(tmp_path / 'names_model')!r}"]


@pytest.mark.parametrize("text", [
    "MC 2221 0012 3412 3450 on file",  # Mastercard 2-series
    "card 2720-9999-9999-9996",  # top of the 2-series range
    "Amex 3782 822463 10005", "Diners 3056 930902 5904", "JCB 3530111333300000", "UnionPay 6212 3456 7890 1232",
    "Maestro 6759 6498 2643 8453", "Discover 6011-0009-9013-9424",
])  # fmt: skip
def test_every_card_network_is_redacted(scanner, text):
    assert "<CREDIT_CARD>" in scanner.redact(text)[0] and not any(ch.isdigit() for ch in scanner.redact(text)[0])


@pytest.mark.parametrize("text", [
    "Call +44 (0)20 7946 0958 today", "mobile +91 98765 43210", "Indian mobile 98765 43210", "+4915112345678",
    "Tel. 030 12345678", "appelez le 01 42 68 53 00", "+81 90-1234-5678", "+55 (11) 91234-5678", "0049 30 12345678",
])  # fmt: skip
def test_international_and_national_phone_formats_are_redacted(scanner, text):
    assert "<PHONE>" in scanner.redact(text)[0] and sum(ch.isdigit() for ch in scanner.redact(text)[0]) == 0


@pytest.mark.parametrize("text", [
    "ISBN 0-306-40615-2", "ISBN 978-3-16-148410-0", "version 10.0.19045.2965", "INV-2026-004812",
    "Reference number 4991312170152440 on the receipt.", "imei 356938035643809", "price €1.234,56", "on 01/12/2026",
])  # fmt: skip
def test_number_look_alikes_survive(scanner, text):
    assert scanner.find(text) == []


@pytest.mark.parametrize("text", ["iban gb82west12345698765432", "RU0204452560040702810412345678901",
                                  "pay to NO93 8601 1117 947 now"])  # fmt: skip
def test_ibans_of_every_registry_country_and_case(scanner, text):
    assert "<IBAN>" in scanner.redact(text)[0]


def test_phone_regions_are_validated_with_a_message_naming_the_value():
    with pytest.raises(ValueError, match=r"unknown phone region\(s\) \['UK'\]"):
        PiiConfig(phone_regions=["GB", "UK"])


def test_committed_case_file_is_reproducible_and_scores_well(scanner):
    committed = [json.loads(line) for line in CASES_PATH.read_text().splitlines()]
    assert committed == generate_cases() and len(committed) >= 400
    for case in committed:
        for e in case["entities"]:
            assert 0 <= e["start"] < e["end"] <= len(case["text"])
    result = score(committed, scanner.find)
    assert result["overall"]["precision"] >= 0.95 and result["overall"]["recall"] >= 0.95
    assert all(v["recall"] >= 0.9 for v in result["per_type"].values())
