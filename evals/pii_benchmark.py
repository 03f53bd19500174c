"""Labelled PII test set (generated, seeded) and an entity-level precision/recall/F1 scorer for tasks.data.pii.

    python -m evals.pii_benchmark --write   # regenerate evals/data/pii_cases.jsonl (deterministic)
    python -m evals.pii_benchmark           # score the scanner on it, print JSON

A predicted span counts as a hit when it has the gold span's type and overlaps it. Look-alikes that are
not PII (ISBNs, dates, versions, order and tracking ids, hashes, non-Luhn card-like numbers, bad-checksum
IBANs, never-issued SSNs) carry no entities, so every detection in them is a false positive.
"""
import argparse
import json
import random
import string
from pathlib import Path
from typing import Any

CASES_PATH = Path(__file__).parent / "data" / "pii_cases.jsonl"
TYPES = ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "CREDENTIAL", "URL_CREDENTIALS"]

FIRST = ["anna", "ben", "chloe", "dmitri", "emeka", "fatima", "gustavo", "hana", "ivan", "jules", "kofi", "lena",
         "mateo", "nadia", "oscar", "priya", "quentin", "rosa", "sven", "tariq", "uma", "viktor", "wen", "yusuf"]  # fmt: skip
LAST = ["okafor", "schmidt", "nguyen", "garcia", "kowalski", "tanaka", "haddad", "silva", "novak", "ibrahim",
        "larsen", "moreau", "patel", "rossi", "kim", "obrien"]  # fmt: skip
DOMAINS = ["example.com", "mail.example.org", "uni-heidelberg.de", "post.co.uk", "company.io", "proton.me",
           "sub.dept.example.net", "outlook.fr"]  # fmt: skip


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, d in enumerate(reversed(body)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return body + str((10 - total % 10) % 10)


def _iban(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    num = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{country}{98 - num % 97:02d}{bban}"


def _group4(s: str) -> str:
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int, chars: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


def email(rng: random.Random) -> str:
    f, l, d = rng.choice(FIRST), rng.choice(LAST), rng.choice(DOMAINS)
    return rng.choice([f"{f}.{l}@{d}", f"{f}_{l}{rng.randint(1, 99)}@{d}", f"{f[0]}{l}+news@{d}", f"{f.upper()}@{d}"])


def phone(rng: random.Random) -> str:
    """A number phonenumbers accepts as valid, in one of several national and international formats."""
    import phonenumbers

    while True:
        d = lambda n: _digits(rng, n)  # noqa: E731
        area, ex = rng.choice(["212", "310", "415", "617", "646", "206", "512", "303"]), f"{rng.randint(2, 9)}{d(2)}"
        cand = rng.choice([
            f"({area}) {ex}-{d(4)}", f"{area}-{ex}-{d(4)}", f"+1 {area} {ex} {d(4)}", f"+1-{area}-{ex}-{d(4)}",
            f"+44 20 7946 0{d(3)}", f"+44 7700 900{d(3)}", f"+49 30 {d(8)}", f"+49 151 {d(4)} {d(4)}",
            f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}", f"+91 98{d(3)} {d(5)}",
            f"+61 2 9{d(3)} {d(4)}", f"+61 4{d(2)} {d(3)} {d(3)}", f"+55 11 9{d(4)}-{d(4)}", f"+81 3-{d(4)}-{d(4)}",
            f"+34 6{d(2)} {d(3)} {d(3)}", f"+39 06 {d(4)} {d(4)}", f"+31 20 {d(3)} {d(4)}",
        ])  # fmt: skip
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(cand, "US")):
                return cand
        except phonenumbers.NumberParseException:
            continue


def credit_card(rng: random.Random) -> str:
    brand = rng.choice(["visa", "visa", "mc", "amex", "discover"])
    if brand == "amex":
        n = _luhn_complete(rng, rng.choice(["34", "37"]), 15)
        return rng.choice([n, f"{n[:4]} {n[4:10]} {n[10:]}"])
    n = _luhn_complete(rng, {"visa": "4", "mc": str(rng.randint(51, 55)), "discover": "6011"}[brand], 16)
    return rng.choice([n, _group4(n), "-".join(n[i : i + 4] for i in range(0, 16, 4))])


def iban(rng: random.Random) -> str:
    up = string.ascii_uppercase
    country, bban = rng.choice([
        ("DE", _digits(rng, 18)), ("GB", _alnum(rng, 4, up) + _digits(rng, 14)), ("FR", _digits(rng, 23)),
        ("NL", _alnum(rng, 4, up) + _digits(rng, 10)), ("ES", _digits(rng, 20)), ("IT", rng.choice(up) + _digits(rng, 22)),
    ])  # fmt: skip
    code = _iban(country, bban)
    return rng.choice([code, _group4(code)])


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    sep = rng.choice(["-", "-", " "])
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def ip(rng: random.Random) -> str:
    return rng.choice([
        f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"2001:db8:{rng.randint(0, 65535):x}::{rng.randint(1, 65535):x}",
        ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8)),
    ])  # fmt: skip


def credential(rng: random.Random) -> tuple[str, str]:
    """(text with the key name, the secret value that is the gold span)."""
    up_dig = string.ascii_uppercase + string.digits
    value = rng.choice([
        "AKIA" + _alnum(rng, 16, up_dig), "ghp_" + _alnum(rng, 36), "gho_" + _alnum(rng, 36),
        "github_pat_" + _alnum(rng, 22) + "_" + _alnum(rng, 59), "sk-" + _alnum(rng, 48), "sk-proj-" + _alnum(rng, 40),
        "xoxb-" + _digits(rng, 12) + "-" + _digits(rng, 12) + "-" + _alnum(rng, 24), "AIza" + _alnum(rng, 35),
    ])  # fmt: skip
    secret = _alnum(rng, rng.randint(8, 20), string.ascii_letters + string.digits + "!#%&*")
    token = "eyJ" + _alnum(rng, 30) + "." + _alnum(rng, 40) + "." + _alnum(rng, 20)
    return rng.choice([
        ("use the key {}", value), ("export AWS_ACCESS_KEY_ID={}", value) if value.startswith("AKIA") else ("token: {}", value),
        ("password={}", secret), ("db password: {}", secret), ('{{"api_key": "{}"}}', _alnum(rng, 32)),
        ("Authorization: Bearer {}", token), ("client_secret = {}", secret), ("PWD={}", secret),
    ])  # fmt: skip


def url_credentials(rng: random.Random) -> str:
    user, pw = rng.choice(FIRST), _alnum(rng, rng.randint(6, 14))
    host = rng.choice(["db.internal.example.com:5432", "example.com", "ftp.example.org", "cluster0.ab12c.mongodb.net",
                       "10.0.3.7:6379", "git.company.io"])  # fmt: skip
    scheme = rng.choice(["postgres", "https", "ftp", "mongodb+srv", "redis", "mysql"])
    return f"{scheme}://{user}:{pw}@{host}"


TEMPLATES: dict[str, list[str]] = {
    "EMAIL": ["Write to {} if you have questions.", "My address is {}", "cc: {} and the team", "Contact: {}.",
              "Send the invoice to {} by Friday."],
    "PHONE": ["Call me at {} after 6pm.", "Phone: {}", "You can reach the office on {}.", "mobile {} (whatsapp too)",
              "Our hotline {} is open 24/7.",
              "Contact {} for details.", "Numbers: {} (office)"],
    "CREDIT_CARD": ["My card number is {}, expiry 04/27.", "Charge {} for the order.", "card: {}", "Paid with {} yesterday."],
    "IBAN": ["Please transfer to IBAN {}.", "Account {} (Sparkasse)", "Bank details: {}", "Refund goes to {} please."],
    "US_SSN": ["My SSN is {}.", "social security number {}", "SSN: {} (do not share)", "Employee record: {}, hired 2019."],
    "IP_ADDRESS": ["The server at {} is down.", "ssh into {} and restart nginx", "Blocked requests from {} today.",
                   "client_ip={} status=200"],
    "URL_CREDENTIALS": ["DATABASE_URL={}/app", "clone from {}/repo.git", "Connect with {}", "broker: {}/0"],
}  # fmt: skip

NEGATIVES = [
    lambda r: f"ISBN 978-{r.randint(0, 1)}-{_digits(r, 3)}-{_digits(r, 5)}-{r.randint(0, 9)} is the new edition.",
    lambda r: f"See ISBN {_digits(r, 1)}-{_digits(r, 3)}-{_digits(r, 5)}-{r.randint(0, 9)} for details.",
    lambda r: f"The meeting is on {r.randint(2000, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} at 10:30.",
    lambda r: f"Deadline {r.randint(1, 28):02d}/{r.randint(1, 12):02d}/{r.randint(1990, 2030)}, no extensions.",
    lambda r: f"Upgrade to version {r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)} before release.",
    lambda r: f"Python {r.randint(2, 3)}.{r.randint(0, 13)}.{r.randint(0, 20)} and numpy {r.randint(1, 2)}.{r.randint(0, 30)}.{r.randint(0, 9)} are required.",
    lambda r: f"Your order ORD-{r.randint(2019, 2025)}-{_digits(r, 6)} has shipped.",
    lambda r: f"Order #{_digits(r, 9)} was cancelled.",
    lambda r: f"Tracking number 1Z{_alnum(r, 6, string.ascii_uppercase + string.digits)}{_digits(r, 10)}.",
    lambda r: f"USPS tracking {_group4('94' + _digits(r, 20))}",
    lambda r: f"commit {_alnum(r, 40, '0123456789abcdef')} fixed the bug",
    lambda r: f"sha256: {_alnum(r, 64, '0123456789abcdef')}",
    lambda r: f"md5 {_alnum(r, 32, '0123456789abcdef')} matches the download",
    lambda r: f"Card-like but invalid: {_group4(_bad_luhn(r))}",
    lambda r: f"Reference number {_bad_luhn(r)} on the receipt.",
    lambda r: f"IBAN with a wrong checksum {_bad_iban(r)} must not match.",
    lambda r: f"Invalid SSN {r.choice(['000', '666'])}-{r.randint(10, 99)}-{r.randint(1000, 9999)} in the test data.",
    lambda r: f"The total was ${r.randint(1, 9999)}.{r.randint(0, 99):02d} for {r.randint(1, 20)} items.",
    lambda r: f"Pi is about 3.{_digits(r, 8)} and e is 2.71828.",
    lambda r: f"Coordinates {r.uniform(-80, 80):.4f}, {r.uniform(-170, 170):.4f}",
    lambda r: f"The run took {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d} on build {_digits(r, 5)}.",
    lambda r: f"UUID {_uuid(r)} identifies the job.",
    lambda r: f"Zip code {_digits(r, 5)} and room {r.randint(100, 999)}.",
    lambda r: "Follow @" + r.choice(FIRST) + " on social media for updates.",
    lambda r: f"The password reset link expires in {r.randint(1, 48)} hours.",
    lambda r: "A token economy rewards good behaviour; the secret is consistency.",
    lambda r: f"Use scikit-learn (sklearn) {r.randint(0, 1)}.{r.randint(0, 9)} for this.",
    lambda r: f"Version string 10.0.{_digits(r, 5)}.{_digits(r, 4)} of the OS.",
    lambda r: f"Visit https://www.example.com/docs/page{r.randint(1, 99)} for more.",
    lambda r: f"Part number {r.choice(string.ascii_uppercase)}{r.choice(string.ascii_uppercase)}{_digits(r, 2)}-{_alnum(r, 4, string.ascii_uppercase)} in stock.",
]  # fmt: skip


# Harder cases, written without tuning the scanner on them: some are expected misses or false positives.
HARD_POSITIVES = [
    lambda r: ("Call {} tomorrow", [("PHONE", f"{r.choice(['415', '646', '212'])} {r.randint(200, 999)} {_digits(r, 4)}")]),
    lambda r: ("the number is {}", [("PHONE", f"{r.choice(['415', '646', '212'])}{r.randint(200, 999)}{_digits(r, 4)}")]),
    lambda r: ("Reach us at {} ext. 23", [("PHONE", f"+1 (212) {r.randint(200, 999)}-{_digits(r, 4)}")]),
    lambda r: ("From: Jane <{}>", [("EMAIL", email(r))]),
    lambda r: ("open http://{}:8080/admin", [("IP_ADDRESS", f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}")]),
    lambda r: ("link-local {} on eth0", [("IP_ADDRESS", f"fe80::{r.randint(1, 65535):x}")]),
    lambda r: ("SSN {} on file", [("US_SSN", f"{r.randint(100, 599)}{r.randint(10, 99)}{r.randint(1000, 9999)}")]),
    lambda r: ("IBAN: {}", [("IBAN", iban(r).lower())]),
    lambda r: ("aws_secret_access_key = {}", [("CREDENTIAL", _alnum(r, 40, string.ascii_letters + string.digits + "/+"))]),
    lambda r: ("curl -H 'Authorization: Bearer {}'", [("CREDENTIAL", _alnum(r, 24))]),
    lambda r: ("card {} exp 09/26 cvv 123", [("CREDIT_CARD", _luhn_complete(r, "4", 13))]),
    lambda r: ("{} and {}", [("EMAIL", email(r)), ("IP_ADDRESS", ip(r))]),
]
HARD_NEGATIVES = [
    lambda r: f"Released firmware {r.randint(1, 4)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)} today.",
    lambda r: f"MAC address {':'.join(_alnum(r, 2, '0123456789ABCDEF') for _ in range(6))} is whitelisted.",
    lambda r: f"IMEI {_luhn_complete(r, '35', 15)} belongs to a test device.",
    lambda r: "password: ******** (hidden)",
    lambda r: f"Logged at {r.randint(2019, 2025)}-0{r.randint(1, 9)}-1{r.randint(0, 9)}T{r.randint(10, 23)}:{r.randint(10, 59)}:{r.randint(10, 59)}Z",
    lambda r: f"Call 911 or 112 in an emergency; room {r.randint(100, 999)}.",
    lambda r: f"The answer key is on page {r.randint(1, 300)}; the token count is {r.randint(100, 9000)}.",
    lambda r: f"Flight LH{r.randint(100, 999)} departs at gate B{r.randint(1, 60)}, seat {r.randint(1, 40)}C.",
]


def _bad_luhn(rng: random.Random) -> str:
    n = _luhn_complete(rng, rng.choice(["4", "5", "6011"]), 16)
    return n[:-1] + str((int(n[-1]) + rng.randint(1, 9)) % 10)


def _bad_iban(rng: random.Random) -> str:
    good = _iban("DE", _digits(rng, 18))
    return good[:2] + f"{(int(good[2:4]) - 2 + rng.randint(1, 90)) % 95 + 2:02d}" + good[4:]


def _uuid(rng: random.Random) -> str:
    h = _alnum(rng, 32, "0123456789abcdef")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _fill(template: str, values: list[tuple[str, str]]) -> dict[str, Any]:
    """Put values into the `{}` slots of template, recording each value's span."""
    pieces = template.replace("{{", "\x00").replace("}}", "\x01").split("{}")
    text, entities = "", []
    for i, piece in enumerate(pieces):
        text += piece.replace("\x00", "{").replace("\x01", "}")
        if i < len(values):
            pii_type, value = values[i]
            entities.append({"type": pii_type, "start": len(text), "end": len(text) + len(value)})
            text += value
    return {"text": text, "entities": entities}


GENERATORS = {"EMAIL": email, "PHONE": phone, "CREDIT_CARD": credit_card, "IBAN": iban, "US_SSN": ssn, "IP_ADDRESS": ip,
              "URL_CREDENTIALS": url_credentials}  # fmt: skip


def generate_cases(seed: int = 0, per_type: int = 30, negatives: int = 90, mixed: int = 30, hard: int = 24) -> list[dict[str, Any]]:
    """The labelled set: positives per type, look-alike negatives, and sentences with several entities."""
    rng = random.Random(seed)
    cases = []
    for pii_type in TYPES:
        for _ in range(per_type):
            if pii_type == "CREDENTIAL":
                template, value = credential(rng)
            else:
                template, value = rng.choice(TEMPLATES[pii_type]), GENERATORS[pii_type](rng)
            cases.append(_fill(template, [(pii_type, value)]))
    for i in range(negatives):
        cases.append({"text": NEGATIVES[i % len(NEGATIVES)](rng), "entities": []})
    for i in range(hard):
        template, values = HARD_POSITIVES[i % len(HARD_POSITIVES)](rng)
        cases.append(_fill(template, values))
        cases.append({"text": HARD_NEGATIVES[i % len(HARD_NEGATIVES)](rng), "entities": []})
    for _ in range(mixed):
        a, b = rng.sample([t for t in TYPES if t != "CREDENTIAL"], 2)
        template = f"{rng.choice(TEMPLATES[a])} Also, {rng.choice(TEMPLATES[b]).lower()} Order #{_digits(rng, 7)} on {rng.randint(1, 28)}/0{rng.randint(1, 9)}/2024."
        cases.append(_fill(template, [(a, GENERATORS[a](rng)), (b, GENERATORS[b](rng))]))
    return cases


def score(cases: list[dict[str, Any]], find, types: list[str] = TYPES) -> dict[str, Any]:
    """Entity-level precision/recall/F1 per type and micro-averaged over `types` (others are ignored on both
    sides); `find(text)` returns spans with type/start/end."""
    tp_gold = {t: 0 for t in types}
    n_gold = {t: 0 for t in types}
    tp_pred = {t: 0 for t in types}
    n_pred = {t: 0 for t in types}
    errors = []
    for case in cases:
        preds = [(s.type, s.start, s.end) for s in find(case["text"]) if s.type in n_pred]
        gold = [(e["type"], e["start"], e["end"]) for e in case["entities"] if e["type"] in n_gold]
        overlap = lambda a, b: a[0] == b[0] and a[1] < b[2] and b[1] < a[2]  # noqa: E731
        for g in gold:
            n_gold[g[0]] += 1
            tp_gold[g[0]] += any(overlap(g, p) for p in preds)
        for p in preds:
            n_pred[p[0]] += 1
            hit = any(overlap(p, g) for g in gold)
            tp_pred[p[0]] += hit
            if not hit:
                errors.append({"false_positive": p[0], "span": case["text"][p[1] : p[2]], "text": case["text"]})
        for g in gold:
            if not any(overlap(g, p) for p in preds):
                errors.append({"missed": g[0], "span": case["text"][g[1] : g[2]], "text": case["text"]})

    def prf(tpp: int, npred: int, tpg: int, ngold: int) -> dict[str, float]:
        p = tpp / npred if npred else 1.0
        r = tpg / ngold if ngold else 1.0
        return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0,
                "gold": ngold, "predicted": npred}  # fmt: skip

    per_type = {t: prf(tp_pred[t], n_pred[t], tp_gold[t], n_gold[t]) for t in types}
    overall = prf(sum(tp_pred.values()), sum(n_pred.values()), sum(tp_gold.values()), sum(n_gold.values()))
    return {"cases": len(cases), "overall": overall, "per_type": per_type, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate the labelled set and exit")
    parser.add_argument("--cases", type=Path, default=CASES_PATH,
                        help=f"labelled set: this project's ({CASES_PATH.name}) or the independent Faker set (pii_faker_cases.jsonl)")
    parser.add_argument("--show-errors", type=int, default=0, help="print this many misses / false positives")
    args = parser.parse_args()
    if args.write:
        cases = generate_cases()
        args.cases.parent.mkdir(parents=True, exist_ok=True)
        args.cases.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
        print(json.dumps({"written": str(args.cases), "cases": len(cases)}))
        return
    from tasks.data.config import PiiConfig
    from tasks.data.pii import PiiScanner

    cases = [json.loads(line) for line in args.cases.read_text(encoding="utf-8").split("\n") if line.strip()]
    scanner = PiiScanner(PiiConfig())
    labelled = {e["type"] for c in cases for e in c["entities"]}
    names_checked = scanner.notes[0].startswith("names checked") if scanner.notes else False
    types = [t for t in [*TYPES, "PERSON"] if t in labelled and (t != "PERSON" or names_checked)]
    result = {"set": str(args.cases), **score(cases, scanner.find, types), "notes": scanner.notes}
    if "PERSON" in labelled and not names_checked:
        result["not_checked"] = {"PERSON": sum(e["type"] == "PERSON" for c in cases for e in c["entities"])}
    result["errors"] = result["errors"][: args.show_errors]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
