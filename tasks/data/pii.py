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

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

from tasks.data.config import PiiConfig
from tasks.data.errors import DataError
from tasks.data.text import map_fields

# Earlier types win when spans overlap (a URL's password must not also become an e-mail).
PRIORITY = ["URL_CREDENTIALS", "CREDENTIAL", "EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "PHONE", "PERSON"]
MIN_SCORE = 0.4  # drops presidio's "very weak" SSN patterns (any 9-digit number) and regex-only guesses
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR", "AU", "ES", "IT", "NL")

_KEY_VALUE = r"\b(?i:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|aws_secret_access_key)"
_CREDENTIAL_PATTERNS = [
    Pattern("AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.9),
    Pattern("GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b", 0.9),
    Pattern("OpenAI-style secret key", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}", 0.8),
    Pattern("Slack token", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", 0.9),
    Pattern("Google API key", r"\bAIza[0-9A-Za-z_\-]{35}\b", 0.9),
    Pattern("Bearer token", r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*", 0.8),
    Pattern("Key-value secret", _KEY_VALUE + r"\s*[=:]\s*[\"']?[^\s\"',;]{4,}", 0.7),
]
_SECRET_PREFIX = re.compile(_KEY_VALUE + r"\s*[=:]\s*[\"']?|(?i:bearer)\s+")
_URL_CRED_PATTERN = Pattern("URL with credentials", r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:@/]+:[^\s@/]+@[^\s/?#]+", 0.9)

# Cheap "might contain" tests; a recognizer only runs on text its prefilter matches.
PREFILTERS = {
    "EMAIL": re.compile(r"\w@\w"),
    "PHONE": re.compile(r"(?:\d[\s().\-/]{0,3}){7}"),
    "CREDIT_CARD": re.compile(r"(?:\d[ \-]?){13}"),
    "IBAN": re.compile(r"[A-Z]{2}\d{2}[ \-]?[A-Z0-9]{4}"),
    "US_SSN": re.compile(r"\d{3}[\- .]\d{2}[\- .]\d{4}"),
    "IP_ADDRESS": re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}"),
    "CREDENTIAL": re.compile(r"AKIA|ASIA|gh[pousr]_|github_pat_|sk-|xox|AIza|(?i:bearer|passw|pwd|secret|api.?key|token)"),
    "URL_CREDENTIALS": re.compile(r"://[^\s/]*@"),
}


@dataclass(frozen=True)
class Span:
    type: str
    start: int
    end: int


class _CredentialRecognizer(PatternRecognizer):
    """API keys, tokens and `password=...`: only the secret value is reported, not the key name."""

    def __init__(self) -> None:
        super().__init__(supported_entity="CREDENTIAL", patterns=_CREDENTIAL_PATTERNS, name="CredentialRecognizer")

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):  # noqa: D102
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for r in results:
            prefix = _SECRET_PREFIX.match(text, r.start)
            if prefix and prefix.end() < r.end:
                r.start = prefix.end()
        return results


class _OfflineEmailRecognizer(EmailRecognizer):
    """EmailRecognizer validates the domain with tldextract, which fetches the suffix list online; use its snapshot."""

    def __init__(self) -> None:
        import tldextract

        super().__init__()
        self._tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    def validate_result(self, pattern_text: str) -> bool:  # noqa: D102
        return self._tld(pattern_text).fqdn != ""


class PiiScanner:
    """Detects PII spans in text and applies the configured per-type action to rows."""

    def __init__(self, cfg: PiiConfig) -> None:
        self.cfg = cfg
        self.notes: list[str] = []
        recognizers: dict[str, EntityRecognizer] = {
            "EMAIL": _OfflineEmailRecognizer(),
            "PHONE": PhoneRecognizer(supported_regions=PHONE_REGIONS),
            "CREDIT_CARD": CreditCardRecognizer(),
            "IBAN": IbanRecognizer(),
            "US_SSN": UsSsnRecognizer(),
            "IP_ADDRESS": IpRecognizer(),
            "CREDENTIAL": _CredentialRecognizer(),
            "URL_CREDENTIALS": PatternRecognizer(supported_entity="URL_CREDENTIALS", patterns=[_URL_CRED_PATTERN]),
        }
        self._active = [(t, PREFILTERS[t], r) for t, r in recognizers.items() if cfg.action(t) != "keep"]
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
        for pii_type, prefilter, recognizer in self._active:
            if prefilter.search(text) is None:
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
