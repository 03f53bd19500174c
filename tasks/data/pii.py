"""Find and redact (or drop rows with) PII using presidio's pattern recognizers, without any NLP model.

Presidio's recognizers are called directly with `nlp_artifacts=None`: the regex + checksum logic
(Luhn, IBAN mod-97, IP parsing, phonenumbers) runs, context boosting (which needs spaCy) does not.
Each recognizer sits behind a cheap prefilter regex so typical text (no digits run, no '@') costs
a handful of C-level searches instead of the full recognizer.
"""
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.data.config import PiiConfig
from tasks.data.errors import DataError
from tasks.data.text import map_fields

# Earlier types win when spans overlap (a URL's password must not also become an e-mail).
PRIORITY = ["URL_CREDENTIALS", "CREDENTIAL", "EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "PHONE", "PERSON"]
MIN_SCORE = 0.4  # drops presidio's "very weak" SSN patterns (any 9-digit number) and regex-only guesses
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR", "AU", "ES", "IT", "NL")

_KEY_VALUE = r"\b(?i:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|aws_secret_access_key)"
_CREDENTIAL_PATTERNS = [  # (name, regex, score) for presidio Patterns
    ("AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.9),
    ("GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b", 0.9),
    ("OpenAI-style secret key", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}", 0.8),
    ("Slack token", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", 0.9),
    ("Google API key", r"\bAIza[0-9A-Za-z_\-]{35}\b", 0.9),
    ("Bearer token", r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*", 0.8),
    ("Key-value secret", _KEY_VALUE + r"[\"']?\s*[=:]\s*[\"']?[^\s\"',;]{4,}", 0.7),
]
_SECRET_PREFIX = re.compile(_KEY_VALUE + r"[\"']?\s*[=:]\s*[\"']?|(?i:bearer)\s+")
# phonenumbers alone accepts any digit run valid in some region (ISBNs, order ids, decimals); a match must
# also look like a phone number as written: international (+...), bracketed area code, trunk prefix 0,
# or the North American 3-3-4 grouping; or follow a phone context word.
_PHONE_SHAPE = re.compile(r"\+\d|\(\d{2,5}\)|0\d|\d{3}[\-. ]\d{3}[\-. ]\d{4}\b")  # used with .match (anchored)
_PHONE_CONTEXT = re.compile(r"(?i)\b(?:phone|call|tel|mobile|cell|fax|hotline|whatsapp|reach|dial|text me)\b[^.\n]{0,20}$")
_PHONE_CANDIDATE = re.compile(r"[+(]?\d[\d\s().\-/]{5,22}\d")


def _phone_like(text: str, start: int, end: int) -> bool:
    """A digit run that reads as a phone number: shape or context, and not glued to a word, '#', '.' or '-'."""
    if start and (text[start - 1] in "#-/.," or text[start - 1].isalnum()):
        return False
    return bool(_PHONE_SHAPE.match(text, start, end) or _PHONE_CONTEXT.search(text, max(0, start - 40), start))


_URL_CRED_PATTERN = ("URL with credentials", r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:@/]+:[^\s@/]+@[^\s/?#]+", 0.9)

# Two-level prefilter: C-speed substring / digit-count gates, then a regex, before any recognizer runs.
# (A Python regex search costs ~20 ns per character; `"@" in text` costs ~30 ns in total.)
PREFILTERS = {
    "EMAIL": re.compile(r"\w@\w"),
    "CREDIT_CARD": re.compile(r"(?:\d[ \-]?){13}"),
    "IBAN": re.compile(r"[A-Za-z]{2}\d{2}[ \-]?[A-Za-z0-9]{4}"),
    "US_SSN": re.compile(r"\d{3}[\- .]\d{2}[\- .]\d{4}"),  # presidio scores bare 9 digits below MIN_SCORE
    "IP_ADDRESS": re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}"),
    "CREDENTIAL": re.compile(r"AKIA|ASIA|gh[pousr]_|github_pat_|sk-|xox|AIza|(?i:bearer|passw|pwd|secret|api.?key|token)"),
    "URL_CREDENTIALS": re.compile(r"://[^\s/]*@"),
}
_CREDENTIAL_HINTS = (b"akia", b"asia", b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat", b"sk-", b"xox", b"aiza",
                     b"bearer", b"passw", b"pwd", b"secret", b"token")  # fmt: skip
_MIN_DIGITS = {"PHONE": 7, "CREDIT_CARD": 13, "IBAN": 8, "US_SSN": 9}


def candidate_types(text: str) -> set[str]:
    """PII types `text` might contain; everything else is certainly absent (gates only ever over-approximate)."""
    out = set()
    if "@" in text:
        out.add("EMAIL")
        if "://" in text:
            out.add("URL_CREDENTIALS")
    raw = text.encode()
    low = raw.lower()
    if any(h in low for h in _CREDENTIAL_HINTS) or (b"api" in low and b"key" in low):
        out.add("CREDENTIAL")
    digits = len(raw) - len(raw.translate(None, b"0123456789"))  # C-speed count of ASCII digits
    out.update(t for t, n in _MIN_DIGITS.items() if digits >= n)
    if (digits >= 4 and raw.count(b".") >= 3) or raw.count(b":") >= 2:
        out.add("IP_ADDRESS")
    # PHONE has no regex gate: its recognizer starts with the candidate regex anyway.
    return {t for t in out if t == "PHONE" or PREFILTERS[t].search(text)}


@dataclass(frozen=True)
class Span:
    type: str
    start: int
    end: int


def build_recognizers() -> dict[str, Any]:
    """PII type -> presidio recognizer. presidio is imported here, not at module import (it pulls in
    spaCy and transformers, seconds of start-up a flow that skips PII should not pay)."""
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    class CredentialRecognizer(PatternRecognizer):
        """API keys, tokens and `password=...`: only the secret value is reported, not the key name."""

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):  # noqa: D102
            results = super().analyze(text, entities, nlp_artifacts, regex_flags)
            for r in results:
                prefix = _SECRET_PREFIX.match(text, r.start)
                if prefix and prefix.end() < r.end:
                    r.start = prefix.end()
            return results

    class ShapedPhoneRecognizer(PhoneRecognizer):
        """PhoneRecognizer run only on digit runs written like a phone number (see _phone_like).

        phonenumbers scans the whole text once per region (milliseconds for a paragraph with any
        long number); cutting candidates first keeps it to the few windows that can be phones.
        """

        def analyze(self, text, entities, nlp_artifacts=None):  # noqa: D102
            out = []
            for cand in _PHONE_CANDIDATE.finditer(text):
                s, e = cand.span()
                if not _phone_like(text, s, e):
                    continue
                for r in super().analyze(text[s:e], entities, nlp_artifacts):
                    r.start, r.end = r.start + s, r.end + s
                    if _phone_like(text, r.start, r.end):
                        out.append(r)
            return out

    class OfflineEmailRecognizer(EmailRecognizer):
        """EmailRecognizer checks the domain with tldextract, which fetches the suffix list online; use its snapshot."""

        def __init__(self) -> None:
            import tldextract

            super().__init__()
            self._tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

        def validate_result(self, pattern_text: str) -> bool:  # noqa: D102
            return self._tld(pattern_text).fqdn != ""

    return {
        "EMAIL": OfflineEmailRecognizer(),
        "PHONE": ShapedPhoneRecognizer(supported_regions=PHONE_REGIONS),
        "CREDIT_CARD": CreditCardRecognizer(),
        "IBAN": IbanRecognizer(),
        "US_SSN": UsSsnRecognizer(),
        "IP_ADDRESS": IpRecognizer(),
        "CREDENTIAL": CredentialRecognizer(supported_entity="CREDENTIAL", patterns=[Pattern(*p) for p in _CREDENTIAL_PATTERNS]),
        "URL_CREDENTIALS": PatternRecognizer(supported_entity="URL_CREDENTIALS", patterns=[Pattern(*_URL_CRED_PATTERN)]),
    }


class PiiScanner:
    """Detects PII spans in text and applies the configured per-type action to rows."""

    def __init__(self, cfg: PiiConfig) -> None:
        self.cfg = cfg
        self.notes: list[str] = []
        self._active = [(t, r) for t, r in build_recognizers().items() if cfg.action(t) != "keep"]
        self._ner = self._load_ner() if cfg.action("PERSON") != "keep" else None

    def _load_ner(self) -> Callable[[str], list[Span]] | None:
        """PERSON names need a spaCy model; without one the type is skipped (noted in the report)."""
        if self.cfg.names == "off":
            return None
        try:
            import spacy

            nlp = spacy.load(self.cfg.spacy_model, disable=["parser", "lemmatizer"])
        except (ImportError, OSError) as e:
            if self.cfg.names == "required":
                raise DataError(f"pii.names=required but spaCy model {self.cfg.spacy_model!r} is not installed ({e})") from e
            self.notes.append(f"PERSON detection skipped: spaCy model {self.cfg.spacy_model!r} not installed")
            return None
        return lambda text: [Span("PERSON", e.start_char, e.end_char) for e in nlp(text).ents if e.label_ == "PERSON"]

    def find(self, text: str) -> list[Span]:
        """Non-overlapping PII spans in `text`, sorted by start."""
        found: list[Span] = []
        maybe = candidate_types(text)
        for pii_type, recognizer in self._active:
            if pii_type not in maybe:
                continue
            for r in recognizer.analyze(text, recognizer.supported_entities, None):
                if r.score >= MIN_SCORE:
                    found.append(Span(pii_type, r.start, r.end))
        if self._ner is not None:
            found += self._ner(text)
        if len(found) < 2:
            return found
        found.sort(key=lambda s: (PRIORITY.index(s.type), s.start - s.end))
        kept: list[Span] = []
        for s in found:
            if all(s.end <= k.start or s.start >= k.end for k in kept):
                kept.append(s)
        return sorted(kept, key=lambda s: s.start)

    def redact(self, text: str) -> tuple[str, list[Span]]:
        """`text` with every span whose action is not "keep" replaced by `<TYPE>`."""
        spans = self.find(text)
        if not spans:
            return text, spans
        out, pos = [], 0
        for s in spans:
            out += [text[pos : s.start], f"<{s.type}>"]
            pos = s.end
        out.append(text[pos:])
        return "".join(out), spans

    def scan_row(self, row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int], bool]:
        """(redacted row, count per PII type, whether a "drop" type was found)."""
        counts: dict[str, int] = {}

        def fn(text: str) -> str:
            redacted, spans = self.redact(text)
            for s in spans:
                counts[s.type] = counts.get(s.type, 0) + 1
            return redacted

        redacted = map_fields(row, fn)
        drop = any(self.cfg.action(t) == "drop" for t in counts)
        return (redacted if counts else row), counts, drop
