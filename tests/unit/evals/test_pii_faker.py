"""The independent Faker PII set: deterministic, committed as generated, and every label checked by validators
written here (not the module's), so a wrong span or an invalid value fails."""
import ipaddress
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import phonenumbers
import pytest

from evals.pii_benchmark import score
from evals.pii_faker import (
    CASES_PATH,
    KINDS,
    SEED,
    TYPES,
    generate_cases,
    iban_ok,
    luhn_ok,
    phone_ok,
    ssn_ok,
    to_jsonl,
)

REGION = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "en_IN": "IN", "ja_JP": "JP", "pt_BR": "BR",
          "es_ES": "ES", "it_IT": "IT", "nl_NL": "NL"}  # fmt: skip


@pytest.fixture(scope="module")
def cases():
    return generate_cases()


def _values(cases, pii_type):
    return [(c, c["text"][e["start"] : e["end"]]) for c in cases for e in c["entities"] if e["type"] == pii_type]


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _mod97(iban: str) -> bool:
    s = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in s)) % 97 == 1


def _network(digits: str) -> str | None:
    """IIN ranges and lengths, written independently of the generator."""
    n, p2, p3, p4 = len(digits), int(digits[:2]), int(digits[:3]), int(digits[:4])
    if n == 15 and p2 in (34, 37):
        return "amex"
    if n == 14 and (300 <= p3 <= 305 or p2 in (36, 38)):
        return "diners"
    if n == 16 and 3528 <= p4 <= 3589:
        return "jcb"
    if digits[0] == "4" and n in (16, 19):
        return "visa"
    if n == 16 and 51 <= p2 <= 55:
        return "mastercard_51_55"
    if n == 16 and 2221 <= p4 <= 2720:
        return "mastercard_2221_2720"
    if n == 16 and p4 == 6011:
        return "discover_6011"
    if n == 16 and 644 <= p3 <= 649:
        return "discover_644_649"
    if n == 16 and p2 == 65:
        return "discover_65"
    if 16 <= n <= 19 and p2 == 62:
        return "unionpay"
    maestro = p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763) or 56 <= p2 <= 58
    if 12 <= n <= 19 and maestro:
        return "maestro"
    return None


def test_same_seed_same_cases_and_other_seed_differs(cases):
    again = generate_cases(SEED)
    assert again == cases
    assert to_jsonl(again) == to_jsonl(cases)
    assert generate_cases(SEED + 1) != cases


def test_output_does_not_depend_on_hash_seed(cases):
    """Faker data built from sets (it_IT's cities) once made the file differ between processes."""
    code = "import sys; from evals.pii_faker import generate_cases, to_jsonl; sys.stdout.write(to_jsonl(generate_cases()))"
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": h},
                       cwd=Path(__file__).parents[3]).stdout.decode("utf-8")
        for h in ("1", "2")
    }  # fmt: skip
    assert outputs == {to_jsonl(cases)}


def test_committed_jsonl_is_the_generator_output(cases):
    assert CASES_PATH.read_text(encoding="utf-8") == to_jsonl(cases)


def test_rows_follow_the_schema(cases):
    assert len({c["text"] for c in cases}) == len(cases), "a repeated text would be counted twice"
    for c in cases:
        assert list(c) == ["text", "entities", "locale", "kind"]
        assert c["kind"] in KINDS and isinstance(c["text"], str) and c["text"]
        spans = sorted((e["start"], e["end"]) for e in c["entities"])
        for e in c["entities"]:
            assert set(e) == {"type", "start", "end"} and e["type"] in TYPES
            assert 0 <= e["start"] < e["end"] <= len(c["text"])
            value = c["text"][e["start"] : e["end"]]
            assert value == value.strip() and value[-1] not in ".,;:", (value, c["text"])
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), c


def test_entity_counts_match_kind(cases):
    for c in cases:
        types = [e["type"] for e in c["entities"]]
        if c["kind"] in ("lookalike", "clean"):
            assert types == [], c
        elif c["kind"] == "pii":
            assert len(types) == 1, c
        else:
            assert 2 <= len(types) <= 3 and len(set(types)) == len(types), c


def test_emails_persons_ips_ssns_are_well_formed(cases):
    for _, v in _values(cases, "EMAIL"):
        assert re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", v), v
    for _, v in _values(cases, "PERSON"):
        assert re.fullmatch(r"[^\W\d_]+(?:['.-]?[^\W\d_]+)*(?: [^\W\d_]+(?:['.-]?[^\W\d_]+)*)+", v), v
    for _, v in _values(cases, "IP_ADDRESS"):
        ipaddress.ip_address(v)
    for c, v in _values(cases, "US_SSN"):
        m = re.fullmatch(r"(\d{3})-(\d{2})-(\d{4})", v)
        assert m and c["locale"] == "en_US", v
        assert m[1] not in ("000", "666") and not m[1].startswith("9") and m[2] != "00" and m[3] != "0000", v


def test_cards_are_luhn_valid_in_known_networks_and_layouts(cases):
    for _, v in _values(cases, "CREDIT_CARD"):
        digits = re.sub(r"[ -]", "", v)
        assert digits.isdigit() and _luhn(digits) and _network(digits), v
        seps = set(re.findall(r"[ -]", v))
        assert len(seps) <= 1, v
        if seps:
            groups = [len(g) for g in re.split(r"[ -]", v)]
            if _network(digits) == "amex":
                assert groups == [4, 6, 5], v
            elif _network(digits) == "diners":
                assert groups == [4, 6, 4], v
            else:
                assert all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4, v


def test_every_card_network_and_both_mastercard_ranges_in_every_layout(cases):
    layouts = defaultdict(set)
    for _, v in _values(cases, "CREDIT_CARD"):
        layout = "dashed" if "-" in v else "spaced" if " " in v else "plain"
        layouts[_network(re.sub(r"[ -]", "", v))].add(layout)
    expected = {"visa", "mastercard_51_55", "mastercard_2221_2720", "amex", "discover_6011", "discover_644_649",
                "discover_65", "diners", "jcb", "unionpay", "maestro"}  # fmt: skip
    assert set(layouts) == expected
    assert all(found == {"plain", "spaced", "dashed"} for found in layouts.values()), dict(layouts)


def test_ibans_pass_mod97_and_belong_to_the_row_country(cases):
    for c, v in _values(cases, "IBAN"):
        compact = v.replace(" ", "")
        assert re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact) and _mod97(compact), v
        assert compact[:2] == c["locale"][-2:], (c["locale"], v)
        if " " in v:
            assert v == " ".join(compact[i : i + 4] for i in range(0, len(compact), 4)), v
    assert len({c["locale"] for c, _ in _values(cases, "IBAN")}) >= 15


def test_phones_are_valid_for_the_row_region_and_cover_formats(cases):
    styles = defaultdict(set)
    for c, v in _values(cases, "PHONE"):
        region = REGION[c["locale"]]
        assert phonenumbers.is_valid_number(phonenumbers.parse(v, region)), (region, v)
        assert not re.search(r"x|ext", v), v
        if re.fullmatch(r"\+\d{8,15}", v):
            styles[region].add("e164")
        elif v.startswith("+") and "(" in v:
            styles[region].add("bracketed")
        elif v.startswith("("):
            styles[region].add("bracketed" if v.startswith("(+") else "national")
        elif v.startswith("+"):
            styles[region].add("dashed" if " " not in v else "spaced")
        else:
            styles[region].add("national")
    for region in ("US", "GB", "DE", "FR", "IN", "JP", "BR"):
        assert {"e164", "spaced", "dashed", "bracketed", "national"} <= styles[region], (region, styles[region])
    phones = [v for _, v in _values(cases, "PHONE")]
    assert any(v.startswith("+44 (0)20 ") for v in phones)
    assert any(re.fullmatch(r"98\d{8}", v) for v in phones)
    assert any(re.fullmatch(r"\+91 98\d{3} \d{5}", v) for v in phones)
    regions = Counter(REGION[c["locale"]] for c, _ in _values(cases, "PHONE"))
    assert len(regions) == 10 and min(regions.values()) >= 8, regions


def test_lookalikes_hold_no_valid_card_or_iban(cases):
    """The 16-digit and IBAN-shaped look-alikes must fail their checksums, or the label 'no PII' would be wrong."""
    checked = Counter()
    for c in (c for c in cases if c["kind"] == "lookalike"):
        for token in re.findall(r"(?<![\d-])\d+(?:[ -]\d+)*", c["text"]):
            digits = re.sub(r"[ -]", "", token)
            if len(digits) == 16 and re.fullmatch(r"\d{4}([ -]?)\d{4}\1\d{4}\1\d{4}", token):
                checked["card"] += 1
                assert not _luhn(digits), c["text"]
        for token in re.findall(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}\b", c["text"]):
            compact = token.replace(" ", "")
            if 15 <= len(compact) <= 34:
                checked["iban"] += 1
                assert not _mod97(compact), c["text"]
    assert checked["card"] >= 10 and checked["iban"] >= 10, checked


def test_sizes_locales_and_kinds(cases):
    kinds = Counter(c["kind"] for c in cases)
    assert 1000 <= len(cases) <= 1500
    assert kinds["lookalike"] >= 150 and kinds["clean"] >= 100 and kinds["mixed"] >= 60, kinds
    rows_with = {t: sum(any(e["type"] == t for e in c["entities"]) for c in cases) for t in TYPES}
    assert min(rows_with.values()) >= 40 and rows_with["CREDIT_CARD"] >= 80 and rows_with["PHONE"] >= 100, rows_with
    for locale in REGION:
        assert {c["kind"] for c in cases if c["locale"] == locale} == set(KINDS), locale
    assert len({c["locale"] for c in cases}) >= 6


def test_module_validators_accept_and_reject():
    assert luhn_ok("4111 1111 1111 1111") and not luhn_ok("4111 1111 1111 1112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE88370400440532013000")
    assert not iban_ok("XX89 3704 0044 0532 0130 00")  # no such country
    assert ssn_ok("123-45-6789") and not ssn_ok("666-45-6789") and not ssn_ok("912-45-6789")
    assert not ssn_ok("123-00-6789") and not ssn_ok("123-45-0000")
    assert phone_ok("+44 (0)20 7946 0123", "GB") and not phone_ok("+44 (0)20 7946 012", "GB")
    assert not phone_ok("not a number", "US")


def test_scores_perfectly_against_its_own_labels(cases):
    """The set plugs into evals.pii_benchmark.score, PERSON included when asked for."""
    gold = {c["text"]: [SimpleNamespace(**e) for e in c["entities"]] for c in cases}
    result = score(cases, lambda text: gold[text], TYPES)
    assert result["overall"]["precision"] == 1.0 and result["overall"]["recall"] == 1.0
    assert result["overall"]["gold"] == sum(len(c["entities"]) for c in cases) > 500
    assert result["per_type"]["PERSON"]["gold"] >= 90
