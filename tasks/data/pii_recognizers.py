"""presidio recognizers for each PII type, run without an NLP model (`nlp_artifacts=None`).

Where presidio's stock recognizer misses real-world formats it is subclassed, never replaced:
- cards: presidio's pattern covers 4/51-55/6/1/3 prefixes in 4-4-4-x groups only, so Mastercard's
  2-series (2221-2720), Amex written 4-6-5 and 12-digit Maestro were missed. The subclass widens the
  pattern and adds an issuer (IIN) and length check on top of presidio's Luhn check, which also
  stops IMEIs (15 digits, TAC 35/86) from passing as cards.
- phones: presidio's PhoneRecognizer (python-phonenumbers' matcher, VALID leniency) over the regions
  from conf; a match written without a leading `+` must also pass phonenumbers' STRICT_GROUPING
  check, which is what rejects ISBN-10s and dashed ids. Our only regex cuts the digit windows the
  matcher runs on; which regions a window is tried in follows phonenumbers' metadata (trunk
  prefix, national lengths), see GroupedPhoneRecognizer.
- IBANs: presidio's table holds 76 countries and misses lower-case IBANs; python-stdnum carries the
  whole SWIFT registry (89 countries: RU, SO, MN, ...) with each BBAN structure and the mod-97 check.
"""
import re
from typing import Any

from tasks.data.config import PiiConfig

MIN_SCORE = 0.4  # drops presidio's "very weak" SSN patterns (any 9-digit number) and regex-only guesses

# (network, IIN prefix ranges, allowed lengths). Sources: ISO/IEC 7812 issuer tables as published by
# the networks (Mastercard 2-series since 2017, Discover's 644-649/65, UnionPay 62/81, Mir 2200-2204).
CARD_NETWORKS: list[tuple[str, list[tuple[str, str]], range]] = [
    ("visa", [("4", "4")], range(13, 20)),
    ("mastercard", [("51", "55"), ("2221", "2720")], range(16, 17)),
    ("amex", [("34", "34"), ("37", "37")], range(15, 16)),
    ("discover", [("6011", "6011"), ("644", "649"), ("65", "65"), ("622126", "622925")], range(16, 20)),
    ("jcb", [("3528", "3589")], range(16, 20)),
    ("diners", [("300", "305"), ("3095", "3095"), ("36", "36"), ("38", "39")], range(14, 20)),
    ("unionpay", [("62", "62"), ("81", "81")], range(16, 20)),
    ("maestro", [("50", "50"), ("56", "69")], range(12, 20)),
    ("mir", [("2200", "2204")], range(16, 20)),
    ("rupay", [("60", "60"), ("82", "82"), ("508", "508")], range(16, 17)),
    ("troy", [("9792", "9792")], range(16, 17)),
]
_KEY_VALUE = r"\b(?i:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|aws_secret_access_key)"
CREDENTIAL_PATTERNS = [  # (name, regex, score) for presidio Patterns
    ("AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.9),
    ("GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b", 0.9),
    ("OpenAI-style secret key", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}", 0.8),
    ("Slack token", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", 0.9),
    ("Google API key", r"\bAIza[0-9A-Za-z_\-]{35}\b", 0.9),
    ("Bearer token", r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*", 0.8),
    ("Key-value secret", _KEY_VALUE + r"[\"']?\s*[=:]\s*[\"']?[^\s\"',;]{4,}", 0.7),
]
SECRET_PREFIX = re.compile(_KEY_VALUE + r"[\"']?\s*[=:]\s*[\"']?|(?i:bearer)\s+")
URL_CREDENTIALS_PATTERN = ("URL with credentials", r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:@/]+:[^\s@/]+@[^\s/?#]+", 0.9)
_CARD_PATTERNS = [  # (name, regex, score): the same separator (space, dash or none) between all groups
    ("card in 4-digit groups or plain", r"\b\d{4}([ \-]?)\d{4}\1\d{4}(?:\1\d{1,4})?(?:\1\d{1,3})?\b", 0.5),
    ("Amex / Diners in 4-6-x groups", r"\b3\d{3}([ \-]?)\d{6}\1\d{4,5}\b", 0.5),
]
# Countries that issue IBANs outside the SWIFT registry (Wikipedia's "partial IBAN" list): mod-97 only.
UNREGISTERED_IBAN_COUNTRIES = frozenset("AO BF BJ CF CG CI CM CV DZ GA GQ GW IR KM MA MG ML MZ NE SN TD TG".split())
# The windows phonenumbers' matcher is run on: a digit run with phone punctuation, at most 24 characters.
# Only a cut of the text (a superset of every phone number), never the decision of what is a phone.
_PHONE_WINDOW = re.compile(r"[+(]?\d[\d\s().\-/]{5,22}\d\)?")
_IBAN_CANDIDATE = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){11,32}")


def card_network(digits: str) -> str | None:
    """The issuing network of a card number by its IIN prefix and length, or None."""
    for name, ranges, lengths in CARD_NETWORKS:
        if len(digits) in lengths and any(lo <= digits[: len(lo)] <= hi for lo, hi in ranges):
            return name
    return None


def iban_valid(candidate: str) -> bool:
    """Registry structure + mod-97 (python-stdnum); countries outside the registry get mod-97 alone.

    National check digits (stdnum's `check_country`) are not required: a number with a wrong
    national check digit is still somebody's account number written down.
    """
    from stdnum import iban
    from stdnum.iso7064 import mod_97_10

    compact = iban.compact(candidate)
    if compact[:2] in UNREGISTERED_IBAN_COUNTRIES:
        return 16 <= len(compact) <= 34 and candidate[:2].isupper() and mod_97_10.is_valid(compact[4:] + compact[:4])
    return iban.is_valid(compact, check_country=False)


def build_recognizers(cfg: PiiConfig) -> dict[str, Any]:
    """PII type -> presidio recognizer. presidio is imported here, not at module import (it pulls in
    spaCy and transformers, seconds of start-up a flow that skips PII should not pay)."""
    import phonenumbers
    from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    class CredentialRecognizer(PatternRecognizer):
        """API keys, tokens and `password=...`: only the secret value is reported, not the key name."""

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):  # noqa: D102
            results = super().analyze(text, entities, nlp_artifacts, regex_flags)
            for r in results:
                prefix = SECRET_PREFIX.match(text, r.start)
                if prefix and prefix.end() < r.end:
                    r.start = prefix.end()
            return results

    class NetworkCardRecognizer(CreditCardRecognizer):
        """presidio's Luhn check plus an issuer/length check over every network in `CARD_NETWORKS`."""

        def __init__(self) -> None:
            super().__init__(patterns=[Pattern(*p) for p in _CARD_PATTERNS])

        def validate_result(self, pattern_text: str) -> bool:  # noqa: D102
            digits = EntityRecognizer.sanitize_value(pattern_text, self.replacement_pairs)
            return card_network(digits) is not None and bool(super().validate_result(pattern_text))

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):  # noqa: D102
            found = super().analyze(text, entities, nlp_artifacts, regex_flags)
            return [r for r in found if not (r.start and text[r.start - 1] == "+")]  # +4915112345678 is a phone

    class GroupedPhoneRecognizer(PhoneRecognizer):
        """phonenumbers' VALID matches (presidio's recognizer, regions from conf), kept when written as a phone is.

        - `+CC` numbers are parsed once, not once per region.
        - A national number must be grouped (a separator or bracket between its digits) or start with
          the region's trunk prefix from phonenumbers' metadata (0 in GB/DE/FR/IN/JP/BR, 1 in the US),
          and pass STRICT_GROUPING for that region; a bare run also counts after one of presidio's phone
          context words ("call", "number", "mobile", ...). A bare digit run such as "(483920175)" or an order
          number is therefore never parsed in 13 regions: that gate keeps the matcher (~100 us per region
          and candidate) off the typical row with a number in it.
        - Digit runs read as "country code without +" and tails of ids (`INV-2026-004812`) are dropped.
        """

        def __init__(self, regions: tuple[str, ...]) -> None:
            super().__init__(supported_regions=regions)
            meta = phonenumbers.PhoneMetadata.metadata_for_region
            self.trunk = {r: (meta(r).national_prefix or "") for r in regions}
            self.lengths = {r: set(meta(r).general_desc.possible_length) for r in regions}

        def analyze(self, text, entities, nlp_artifacts=None):  # noqa: D102
            results = []
            for window in _PHONE_WINDOW.finditer(text):
                start, raw = window.start(), window.group()
                if start and (text[start - 1].isalnum() or text[start - 1] in "#-/.,"):
                    continue  # the tail of an id (INV-2026-004812), a decimal, a version
                for region in self._regions_for(raw, text, start):
                    for m in phonenumbers.PhoneNumberMatcher(raw, region, leniency=self.leniency):
                        if self._international(m.raw_string, region) or self._grouped(m, region):
                            m.start, m.end = m.start + start, m.end + start
                            results.append(self._get_recognizer_result(m, text, region, nlp_artifacts))
            return EntityRecognizer.remove_duplicates(results)

        def _regions_for(self, raw: str, text: str, start: int) -> tuple[str, ...]:
            """Where to look a candidate up: one region for +CC, all for grouped digits or a bare run after a
            context word, else only regions whose trunk prefix it starts with."""
            digits = "".join(ch for ch in raw if ch.isdigit())
            if raw.startswith("+"):
                return self.supported_regions[:1]
            first, last = next(i for i, ch in enumerate(raw) if ch.isdigit()), len(raw.rstrip(")"))
            if not raw[first:last].isdigit() or self._context_before(text, start):
                return tuple(r for r in self.supported_regions if self._fits(digits, r))
            return tuple(r for r in self.supported_regions if self.trunk[r] and digits.startswith(self.trunk[r]) and self._fits(digits, r))

        def _fits(self, digits: str, region: str) -> bool:
            """The digit count is one of the region's national number lengths, with or without its trunk prefix
            (phonenumbers' metadata; the matcher would reject the rest after a costly parse)."""
            if digits.startswith(("00", "011")):  # an international dialling prefix: any length
                return True
            trunk = self.trunk[region]
            n = len(digits) - (len(trunk) if trunk and digits.startswith(trunk) else 0)
            return n in self.lengths[region] or len(digits) in self.lengths[region]

        def _context_before(self, text: str, start: int) -> bool:
            """One of presidio's phone context words ("phone", "number", "call", ...) in the 30 characters before."""
            before = text[max(0, start - 30) : start].casefold()
            return any(word in before for word in self.context)

        @staticmethod
        def _international(raw: str, region: str) -> bool:
            """Written with `+` or an international dialling prefix (00, 011) before the country code."""
            source = phonenumbers.CountryCodeSource
            how = phonenumbers.parse(raw, region, keep_raw_input=True).country_code_source
            return how in (source.FROM_NUMBER_WITH_PLUS_SIGN, source.FROM_NUMBER_WITH_IDD)

        def _grouped(self, match: Any, region: str) -> bool:
            """A national number grouped as `region` writes it; never a digit run read as "country code without +"."""
            how = phonenumbers.parse(match.raw_string, region, keep_raw_input=True).country_code_source
            if how == phonenumbers.CountryCodeSource.FROM_NUMBER_WITHOUT_PLUS_SIGN:
                return False
            strict = phonenumbers.Leniency.STRICT_GROUPING
            return any(True for _ in phonenumbers.PhoneNumberMatcher(match.raw_string, region, leniency=strict))

    class RegistryIbanRecognizer(EntityRecognizer):
        """IBANs of every registry country, upper or lower case, plain or in groups; see `iban_valid`."""

        def load(self) -> None:  # noqa: D102
            pass

        def analyze(self, text, entities, nlp_artifacts=None):  # noqa: D102
            out = []
            for m in _IBAN_CANDIDATE.finditer(text):
                span = m.group()
                # the candidate may run into the next word ("... 0130 00 and"): take the longest valid prefix
                for end in range(len(span), 14, -1):
                    if (end == len(span) or not span[end].isalnum()) and iban_valid(span[:end]):
                        out.append(RecognizerResult("IBAN", m.start(), m.start() + end, 1.0))
                        break
            return out

    return {
        "EMAIL": _offline_email_recognizer(EmailRecognizer),
        "PHONE": GroupedPhoneRecognizer(tuple(cfg.phone_regions)),
        "CREDIT_CARD": NetworkCardRecognizer(),
        "IBAN": RegistryIbanRecognizer(supported_entities=["IBAN"]),
        "US_SSN": UsSsnRecognizer(),
        "IP_ADDRESS": IpRecognizer(),
        "CREDENTIAL": CredentialRecognizer(supported_entity="CREDENTIAL", patterns=[Pattern(*p) for p in CREDENTIAL_PATTERNS]),
        "URL_CREDENTIALS": PatternRecognizer(supported_entity="URL_CREDENTIALS", patterns=[Pattern(*URL_CREDENTIALS_PATTERN)]),
    }


def _offline_email_recognizer(base: type) -> Any:
    """EmailRecognizer checks the domain with tldextract, which fetches the suffix list online; use its snapshot."""
    import tldextract

    class OfflineEmailRecognizer(base):
        def __init__(self) -> None:
            super().__init__()
            self._tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

        def validate_result(self, pattern_text: str) -> bool:  # noqa: D102
            return self._tld(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def load_name_recognizer(cfg: PiiConfig) -> tuple[Any, str | None]:
    """(callable text -> [(start, end)] for PERSON names, or None; a note for the report).

    Names go through presidio's NER path: its SpacyNlpEngine runs the spaCy model and its
    SpacyRecognizer maps PERSON/PER entities. No official spaCy model is on the package index here,
    so it is optional: `names: auto` skips names (and says so) without one, `names: required` fails.
    """
    if cfg.names == "off" or cfg.action("PERSON") == "keep":
        return None, "names were not checked (pii.names: off)" if cfg.names == "off" else None
    missing = spacy_model_missing(cfg.spacy_model)
    if missing:
        return None, f"names were NOT checked: {missing}; install a spaCy model to check them"
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": cfg.spacy_model}])
    engine.load()
    recognizer = SpacyRecognizer(supported_entities=["PERSON"])

    def find(text: str) -> list[tuple[int, int]]:
        found = recognizer.analyze(text, ["PERSON"], engine.process_text(text, "en"))
        return [(r.start, r.end) for r in found if r.score >= MIN_SCORE]

    return find, f"names checked with spaCy model {cfg.spacy_model!r}"


def spacy_model_missing(model: str) -> str | None:
    """Why `model` cannot load, or None. Checked before presidio sees it: presidio would download it."""
    from pathlib import Path

    try:
        import spacy.util
    except ImportError:
        return "spaCy is not installed"
    if spacy.util.is_package(model) or Path(model).is_dir():
        return None
    return f"spaCy model {model!r} is not installed"
