"""Independent labelled PII test set, generated with Faker, for measuring the PII scanner on data nobody tuned it on.

    python -m evals.pii_faker --write   # regenerate evals/data/pii_faker_cases.jsonl (deterministic)
    python -m evals.pii_faker           # print row counts per kind, type and locale

What it is: about 1,000 short texts in ten Faker locales (en_US, en_GB, de_DE, fr_FR, en_IN, ja_JP, pt_BR, es_ES,
it_IT, nl_NL; IBANs also from fifteen more countries), each labelled with the exact character spans of the
PII it contains. Rows have the schema of `evals/data/pii_cases.jsonl` plus `locale` and `kind`:

    {"text": str, "entities": [{"type": T, "start": int, "end": int}], "locale": str, "kind": str}

with T in TYPES and kind one of "pii" (one value), "mixed" (2-3 values of different types), "lookalike" (strings
that resemble PII but are not: ISBNs, versions, order/invoice/tracking ids, dates, amounts, postcodes, UUIDs,
timestamps, hashes, Luhn-invalid 16-digit numbers, IBANs with a wrong checksum) and "clean" (ordinary text).

How it was made: values come from Faker (seeded per instance) or, where Faker lacks a format, from small generators
here; surrounding sentences come from hand-written templates, several per type and language, with the value at the
start, middle or end of a sentence. It was written WITHOUT reading the scanner's code or running the scanner, and it
must stay that way: do not edit templates, values or labels to match what the scanner finds, or the set stops
measuring anything. Add rows only for formats real text contains, then regenerate.

Label rules, so that a miss or a false positive means the same thing on every row:
- PERSON is a person's first and last name; titles ("Dr.", "Herr") stay outside the span. It is labelled even when
  the scanner has no spaCy model to check names (`evals.pii_benchmark` then reports it as not checked).
- PHONE values are kept only if `phonenumbers.is_valid_number(phonenumbers.parse(value, region))` accepts them for
  the row's locale region; Faker extensions ("x123") are stripped. The set measures format coverage (national,
  E.164, spaced, dashed, bracketed, "+44 (0)20 ..." trunk prefix), not the scanner's numbering-plan knowledge.
- CREDIT_CARD values are Luhn-valid, written plain, spaced or dashed (Amex 4-6-5, Diners 4-6-4, others in fours),
  for Visa (16/19), Mastercard 51-55 and 2221-2720, Amex, Discover (6011/644-649/65), Diners, JCB (3528-3589),
  UnionPay (62, 16 or 19 digits) and Maestro (12, 16, 18 or 19 digits). Legacy formats no longer issued (13-digit
  Visa, 15-digit JCB 1800/2131) are left out.
- IBAN values pass mod-97 and have their country's registry length; some are written in groups of four.
- US_SSN values are dashed and in issued ranges (area not 000/666/9xx, group not 00, serial not 0000).
- Look-alikes are labelled by what they are even where part of them has a PII shape: 'v2.10.4.1' holds the
  IPv4-shaped '2.10.4.1', and a bare ISBN, order number or Unix timestamp is a plausible digit string.
"""
import argparse
import json
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import phonenumbers
from faker import Faker
from faker.providers.lorem.en_US import Provider as EnglishLorem

SEED = 20261201
CASES_PATH = Path(__file__).parent / "data" / "pii_faker_cases.jsonl"
TYPES = ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "PERSON"]
KINDS = ["pii", "lookalike", "clean", "mixed"]

# Main locales: (phone region, template language). Every row's phone numbers belong to its locale's region.
LOCALES = {"en_US": ("US", "en"), "en_GB": ("GB", "en"), "de_DE": ("DE", "de"), "fr_FR": ("FR", "fr"),
           "en_IN": ("IN", "en"), "ja_JP": ("JP", "ja"), "pt_BR": ("BR", "pt"), "es_ES": ("ES", "es"),
           "it_IT": ("IT", "it"), "nl_NL": ("NL", "nl")}  # fmt: skip
# Faker's iban() for en_US, en_IN and ja_JP returns a British IBAN, so IBAN rows use locales whose country has one.
IBAN_MAIN_LOCALES = ["en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR"]
IBAN_EXTRA_LOCALES = {"de_AT": "de", "de_CH": "de", "nl_BE": "nl", "pt_PT": "pt", "en_IE": "en", "pl_PL": "en",
                      "fi_FI": "en", "no_NO": "en", "da_DK": "en", "cs_CZ": "en", "sk_SK": "en", "ro_RO": "en",
                      "tr_TR": "en", "el_GR": "en", "uk_UA": "en", "fr_CH": "fr"}  # fmt: skip
ALL_LOCALES = [*LOCALES, *IBAN_EXTRA_LOCALES]
# SWIFT IBAN registry lengths for every country the set uses.
IBAN_LENGTHS = {"GB": 22, "DE": 22, "FR": 27, "ES": 24, "IT": 27, "NL": 18, "BR": 29, "AT": 20, "CH": 21, "BE": 16,
                "PT": 25, "IE": 22, "PL": 28, "FI": 18, "NO": 15, "DK": 18, "CZ": 24, "SK": 24, "RO": 24, "TR": 26,
                "GR": 27, "UA": 29}  # fmt: skip

# ---------------------------------------------------------------------------------------------------------------
# Validators (also used by the unit tests)


def luhn_ok(number: str) -> bool:
    """Luhn checksum of the digits in number (separators ignored)."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return bool(digits) and total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 check: registry length for the country and mod-97 == 1 (spaces ignored)."""
    s = iban.replace(" ", "")
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", s) or IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    return int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1


def ssn_ok(ssn: str) -> bool:
    """Dashed SSN in an issued range: area not 000/666/900-999, group not 00, serial not 0000."""
    m = re.fullmatch(r"(\d{3})-(\d{2})-(\d{4})", ssn)
    return bool(m) and m[1] not in ("000", "666") and m[1][0] != "9" and m[2] != "00" and m[3] != "0000"


def phone_ok(phone: str, region: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(phone, region))
    except phonenumbers.NumberParseException:
        return False


# ---------------------------------------------------------------------------------------------------------------
# Templates. "{TYPE}" marks where a value goes; "{X}" marks a look-alike value (no label).

PII_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "en": {
        "EMAIL": ["Contact me at {EMAIL}.", "{EMAIL} is the best address to reach our support team",
                  "Please forward the signed contract to {EMAIL} before Friday.", "Reply-To: {EMAIL}",
                  "You can also drop a line to {EMAIL}; I check it daily.",
                  "Her new address ({EMAIL}) replaces the old one.", "Sent from {EMAIL} on behalf of the committee"],
        "PHONE": ["Call me on {PHONE}.", "{PHONE} is my mobile, text anytime",
                  "For urgent issues ring the hotline at {PHONE} between 9 and 5.", "Tel: {PHONE}",
                  "My number changed to {PHONE}, please update your contacts.", "Leave a message at {PHONE}",
                  "The front desk ({PHONE}) is open around the clock."],
        "CREDIT_CARD": ["Card number: {CREDIT_CARD}", "Please charge {CREDIT_CARD} for the remaining balance.",
                        "{CREDIT_CARD} was declined at checkout, can you try again?",
                        "I paid with my card {CREDIT_CARD}, expiry 09/28.",
                        "The customer read out {CREDIT_CARD} over the phone",
                        "Use the corporate card ({CREDIT_CARD}) for travel bookings."],
        "IBAN": ["IBAN: {IBAN}", "Please transfer the deposit to {IBAN}.", "{IBAN} is the account for all refunds",
                 "Our bank details changed; the new IBAN is {IBAN}, BIC to follow.",
                 "Salary goes to account {IBAN} from next month"],
        "US_SSN": ["SSN: {US_SSN}", "My social security number is {US_SSN}.", "{US_SSN} was entered on the W-4 form",
                   "Applicant SSN ({US_SSN}) verified by HR.",
                   "Please confirm the last digits of {US_SSN} before we proceed",
                   "The tax return lists {US_SSN} for the primary filer."],
        "IP_ADDRESS": ["Login attempt from {IP_ADDRESS} blocked.",
                       '{IP_ADDRESS} - - [01/Dec/2026:10:15:32 +0000] "GET /index.html HTTP/1.1" 200 512',
                       "The server at {IP_ADDRESS} stopped responding", "Whitelist {IP_ADDRESS} in the firewall, please.",
                       "client_ip={IP_ADDRESS} status=403", "Your last sign-in came from {IP_ADDRESS}"],
        "PERSON": ["{PERSON} will join the call tomorrow.", "Please ask {PERSON} to sign the form",
                   "Meeting notes taken by {PERSON}.", "Dear {PERSON},",
                   "The package was signed for by {PERSON} at reception.", "Approved: {PERSON}",
                   "I spoke to Dr. {PERSON} about the results"],
    },
    "de": {
        "EMAIL": ["Schreiben Sie mir an {EMAIL}.", "{EMAIL} ist meine neue Adresse",
                  "Bitte senden Sie die Unterlagen an {EMAIL}, danke!", "E-Mail: {EMAIL}"],
        "PHONE": ["Rufen Sie mich unter {PHONE} an.", "Tel.: {PHONE}", "{PHONE} ist meine Handynummer",
                  "Erreichbar bin ich unter der Nummer {PHONE} (werktags)."],
        "CREDIT_CARD": ["Kartennummer: {CREDIT_CARD}", "Bitte buchen Sie den Betrag von meiner Karte {CREDIT_CARD} ab.",
                        "{CREDIT_CARD} wurde an der Kasse abgelehnt"],
        "IBAN": ["Bitte überweisen Sie den Betrag auf {IBAN}.", "IBAN: {IBAN}", "{IBAN} ist unser Geschäftskonto",
                 "Unsere Bankverbindung lautet {IBAN} bei der Sparkasse."],
        "IP_ADDRESS": ["Zugriff von {IP_ADDRESS} wurde blockiert.", "Der Server {IP_ADDRESS} antwortet nicht",
                       "{IP_ADDRESS} steht auf der Sperrliste."],
        "PERSON": ["{PERSON} nimmt morgen an der Besprechung teil.", "Sehr geehrte/r {PERSON},",
                   "Ansprechpartner: {PERSON}", "Bitte wenden Sie sich an Herrn oder Frau {PERSON}."],
    },
    "fr": {
        "EMAIL": ["Écrivez-moi à {EMAIL}.", "Mon adresse e-mail : {EMAIL}", "{EMAIL} est l'adresse du service client",
                  "Merci d'envoyer le dossier à {EMAIL} avant lundi."],
        "PHONE": ["Mon numéro: {PHONE}.", "Appelez-moi au {PHONE}", "{PHONE} est mon portable, n'hésitez pas.",
                  "Tél. : {PHONE}"],
        "CREDIT_CARD": ["Numéro de carte : {CREDIT_CARD}", "Veuillez débiter la carte {CREDIT_CARD}.",
                        "{CREDIT_CARD} a été refusée"],
        "IBAN": ["Veuillez effectuer le virement sur {IBAN}.", "IBAN : {IBAN}", "{IBAN} est notre compte principal",
                 "RIB joint, IBAN {IBAN}, merci."],
        "IP_ADDRESS": ["Connexion refusée depuis {IP_ADDRESS}.", "{IP_ADDRESS} ne répond plus",
                       "Adresse IP du serveur : {IP_ADDRESS}"],
        "PERSON": ["{PERSON} participera à la réunion demain.", "Bonjour {PERSON},", "Dossier suivi par {PERSON}.",
                   "Merci de contacter Mme ou M. {PERSON}"],
    },
    "es": {
        "EMAIL": ["Escríbeme a {EMAIL}.", "Correo: {EMAIL}", "{EMAIL} es mi dirección del trabajo"],
        "PHONE": ["Llámame al {PHONE}.", "Teléfono: {PHONE}", "{PHONE} es mi móvil, mándame un mensaje"],
        "CREDIT_CARD": ["Número de tarjeta: {CREDIT_CARD}", "Cárguelo a la tarjeta {CREDIT_CARD}, por favor.",
                        "{CREDIT_CARD} fue rechazada"],
        "IBAN": ["Haga la transferencia a {IBAN}.", "IBAN: {IBAN}", "{IBAN} es la cuenta de la empresa"],
        "IP_ADDRESS": ["Acceso bloqueado desde {IP_ADDRESS}.", "{IP_ADDRESS} no responde",
                       "La IP del servidor es {IP_ADDRESS}"],
        "PERSON": ["{PERSON} asistirá a la reunión.", "Estimado/a {PERSON}:", "Por favor, contacte con {PERSON}."],
    },
    "it": {
        "EMAIL": ["Scrivimi a {EMAIL}.", "Email: {EMAIL}", "{EMAIL} è l'indirizzo dell'ufficio"],
        "PHONE": ["Chiamami al {PHONE}.", "Tel. {PHONE}", "{PHONE} è il mio cellulare"],
        "CREDIT_CARD": ["Numero carta: {CREDIT_CARD}", "Addebitate l'importo sulla carta {CREDIT_CARD}.",
                        "{CREDIT_CARD} è stata rifiutata"],
        "IBAN": ["Effettuare il bonifico su {IBAN}.", "IBAN: {IBAN}", "{IBAN} è il conto aziendale"],
        "IP_ADDRESS": ["Accesso bloccato da {IP_ADDRESS}.", "{IP_ADDRESS} non risponde", "Indirizzo IP: {IP_ADDRESS}"],
        "PERSON": ["{PERSON} parteciperà alla riunione.", "Gentile {PERSON},", "Referente: {PERSON}"],
    },
    "nl": {
        "EMAIL": ["Mail me op {EMAIL}.", "E-mail: {EMAIL}", "{EMAIL} is mijn werkadres"],
        "PHONE": ["Bel me op {PHONE}.", "Tel.: {PHONE}", "{PHONE} is mijn mobiele nummer"],
        "CREDIT_CARD": ["Kaartnummer: {CREDIT_CARD}", "Schrijf het bedrag af van kaart {CREDIT_CARD}.",
                        "{CREDIT_CARD} werd geweigerd"],
        "IBAN": ["Maak het bedrag over naar {IBAN}.", "IBAN: {IBAN}", "{IBAN} is onze zakelijke rekening"],
        "IP_ADDRESS": ["Toegang geblokkeerd vanaf {IP_ADDRESS}.", "{IP_ADDRESS} reageert niet",
                       "IP-adres van de server: {IP_ADDRESS}"],
        "PERSON": ["{PERSON} komt morgen naar de vergadering.", "Beste {PERSON},", "Contactpersoon: {PERSON}"],
    },
    "pt": {
        "EMAIL": ["Me escreva em {EMAIL}.", "E-mail: {EMAIL}", "{EMAIL} é o meu endereço do trabalho"],
        "PHONE": ["Me liga no {PHONE}.", "Telefone: {PHONE}", "{PHONE} é o meu celular"],
        "CREDIT_CARD": ["Número do cartão: {CREDIT_CARD}", "Pode debitar no cartão {CREDIT_CARD}.",
                        "{CREDIT_CARD} foi recusado"],
        "IBAN": ["Faça a transferência para {IBAN}.", "IBAN: {IBAN}", "{IBAN} é a conta da empresa"],
        "IP_ADDRESS": ["Acesso bloqueado a partir de {IP_ADDRESS}.", "{IP_ADDRESS} não responde",
                       "IP do servidor: {IP_ADDRESS}"],
        "PERSON": ["{PERSON} vai participar da reunião.", "Prezado(a) {PERSON},", "Responsável: {PERSON}"],
    },
    "ja": {
        "EMAIL": ["メールは{EMAIL}までお願いします。", "連絡先：{EMAIL}", "{EMAIL} に資料を送ってください。"],
        "PHONE": ["電話番号は{PHONE}です。", "TEL：{PHONE}", "{PHONE}までお電話ください。"],
        "CREDIT_CARD": ["カード番号：{CREDIT_CARD}", "{CREDIT_CARD}のカードで支払いました。",
                        "お支払いはカード {CREDIT_CARD} でお願いします。"],
        "IBAN": ["振込先IBAN：{IBAN}", "{IBAN}へ送金してください。"],
        "IP_ADDRESS": ["{IP_ADDRESS}からのアクセスを遮断しました。", "サーバーのIPアドレスは{IP_ADDRESS}です。"],
        "PERSON": ["{PERSON}様、いつもお世話になっております。", "担当：{PERSON}", "明日の会議には{PERSON}さんが参加します。"],
    },
}  # fmt: skip

# Multi-value templates (signatures, forms); the other mixed rows join single-value sentences.
MIXED_TEMPLATES: dict[str, list[str]] = {
    "en": ["{PERSON}\nSenior Analyst\nTel: {PHONE}\n{EMAIL}", "Hi, this is {PERSON}. Call me back on {PHONE} when you can.",
           "Refund to {IBAN} please, the card {CREDIT_CARD} was cancelled.", "User {EMAIL} logged in from {IP_ADDRESS}.",
           "Name: {PERSON}, SSN: {US_SSN}, phone: {PHONE}"],
    "de": ["Mit freundlichen Grüßen\n{PERSON}\nTel.: {PHONE}\nE-Mail: {EMAIL}", "Kontoinhaber: {PERSON}, IBAN: {IBAN}"],
    "fr": ["Cordialement,\n{PERSON}\nTél. : {PHONE}\n{EMAIL}", "Titulaire : {PERSON} – IBAN {IBAN}"],
    "ja": ["{PERSON}\n電話：{PHONE}\nメール：{EMAIL}"],
}  # fmt: skip

LOOKALIKE_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "isbn10": {"en": ["The first edition ({X}) is out of print.", "{X} is the paperback edition", "Cite as {X}."],
               "de": ["Das Buch hat die {X}."]},
    "isbn13": {"en": ["Order the textbook by number: {X}", "{X} - hardcover, 2nd edition.", "Reference {X} in the bibliography."],
               "fr": ["Le livre porte le numéro {X}."]},
    "version": {"en": ["Upgrade to {X} fixes the memory leak.", "Running build {X} on all nodes", "{X} is the current LTS release."],
                "de": ["Bitte auf Version {X} aktualisieren."]},
    "order": {"en": ["Order #{X} has shipped.", "Your order {X} is confirmed", "Re: order no. {X}"],
              "de": ["Ihre Bestellung Nr. {X} ist unterwegs."], "fr": ["Commande n° {X} expédiée."],
              "es": ["Pedido {X} enviado."], "ja": ["ご注文番号{X}を承りました。"]},
    "invoice": {"en": ["Invoice {X} is due in 30 days.", "Please quote {X} with your payment", "{X} attached."],
                "de": ["Rechnung {X} ist fällig."], "it": ["In allegato la fattura {X}."]},
    "date": {"en": ["The contract starts on {X}.", "Due date: {X}", "{X} is the last day to apply"],
             "de": ["Der Termin ist am {X}.", "Stand: {X}"], "fr": ["Le rendez-vous est fixé au {X}."],
             "es": ["La reunión es el {X}."], "it": ["La scadenza è il {X}."], "nl": ["De afspraak is op {X}."],
             "pt": ["O prazo termina em {X}."], "ja": ["締め切りは{X}です。"]},
    "money": {"en": ["Total due: {X}", "The repair came to {X}, parts included.", "{X} was refunded yesterday"],
              "de": ["Der Gesamtbetrag beträgt {X}."], "fr": ["Montant total : {X}"], "es": ["Importe: {X}"],
              "it": ["Totale: {X}"], "nl": ["Totaalbedrag: {X}"], "pt": ["Valor total: {X}"], "ja": ["合計金額は{X}です。"]},
    "postcode": {"en": ["Ship it to the warehouse at postcode {X}.", "Delivery area {X} is covered", "ZIP/postal code: {X}"],
                 "de": ["PLZ: {X}"], "fr": ["Code postal : {X}"], "es": ["Código postal {X}"], "it": ["CAP {X}"],
                 "nl": ["Postcode: {X}"], "pt": ["CEP: {X}"], "ja": ["郵便番号：〒{X}"]},
    "tracking": {"en": ["Tracking number: {X}", "Your parcel {X} is out for delivery.", "{X} was scanned at the depot"],
                 "de": ["Sendungsnummer: {X}"], "nl": ["Track & trace: {X}"]},
    "uuid": {"en": ["request_id={X} completed in 38 ms", "Session {X} expired.", "{X} is the correlation id"]},
    "bad_luhn": {"en": ["Customer reference {X}", "Membership no. {X} renewed.", "Ticket {X} has been escalated"],
                 "de": ["Kundennummer: {X}"], "fr": ["Référence client : {X}"]},
    "bad_iban": {"en": ["Reference code {X} (not an account).", "Mandate reference: {X}", "{X} is the batch id"],
                 "de": ["Mandatsreferenz: {X}"]},
    "timestamp": {"en": ["[{X}] INFO worker started", "Last modified: {X}", "{X} backup finished"],
                  "de": ["Zuletzt geändert: {X}"]},
    "hash": {"en": ["Checksum: {X}", "Fixed in commit {X}.", "{X} matches the published digest"],
             "de": ["Prüfsumme: {X}"]},
}  # fmt: skip

CLEAN_TEMPLATES: dict[str, list[str]] = {
    "en": ["The meeting in {CITY} has been moved to next week.", "We are expanding our office in {CITY} this spring.",
           "Thanks for the quick turnaround on the report!"],
    "de": ["Das Treffen in {CITY} wurde auf nächste Woche verschoben.", "Vielen Dank für die schnelle Rückmeldung!"],
    "fr": ["La réunion à {CITY} est reportée à la semaine prochaine.", "Merci pour votre retour rapide !"],
    "es": ["La reunión en {CITY} se ha aplazado a la próxima semana.", "¡Gracias por la respuesta tan rápida!"],
    "it": ["La riunione a {CITY} è stata spostata alla prossima settimana.", "Grazie per la risposta veloce!"],
    "nl": ["De vergadering in {CITY} is verplaatst naar volgende week.", "Bedankt voor de snelle reactie!"],
    "pt": ["A reunião em {CITY} foi adiada para a próxima semana.", "Obrigado pela resposta rápida!"],
    "ja": ["{CITY}での会議は来週に延期になりました。", "迅速なご対応ありがとうございます。"],
}  # fmt: skip

MONTHS = {
    "en": "January February March April May June July August September October November December",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
}  # fmt: skip

_SLOT = re.compile(r"\{([A-Z_]+)\}")


def _fill(template: str, values: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """Put values into the {TYPE} slots of template, recording each value's character span."""
    text, entities, pos = "", [], 0
    for m in _SLOT.finditer(template):
        text += template[pos : m.start()]
        value = values[m[1]]
        entities.append({"type": m[1], "start": len(text), "end": len(text) + len(value)})
        text += value
        pos = m.end()
    return text + template[pos:], entities


def _row(text: str, entities: list[dict[str, Any]], locale: str, kind: str) -> dict[str, Any]:
    return {"text": text, "entities": entities, "locale": locale, "kind": kind}


def _lang(locale: str, rng: random.Random) -> str:
    """Template language: mostly the locale's own, sometimes English, as in real multilingual data."""
    native = LOCALES[locale][1] if locale in LOCALES else IBAN_EXTRA_LOCALES[locale]
    return native if native == "en" or rng.random() < 0.7 else "en"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


class _Fakers:
    """One Faker per locale, each seeded from the set's seed and the locale's fixed index, created on first use."""

    def __init__(self, seed: int):
        self.seed = seed
        self._by_locale: dict[str, Faker] = {}

    def __call__(self, locale: str) -> Faker:
        if locale not in self._by_locale:
            fake = Faker(locale)
            fake.seed_instance(self.seed + ALL_LOCALES.index(locale))
            self._by_locale[locale] = fake
        return self._by_locale[locale]


# ---------------------------------------------------------------------------------------------------------------
# PII values


def _email(fake: Faker, rng: random.Random) -> str:
    return rng.choice([fake.email, fake.free_email, fake.company_email])()


def _person(fake: Faker, rng: random.Random, locale: str) -> str:
    """First and last name only: Faker's name() sometimes adds titles and degrees ("Univ.Prof.", "B.Sc.")."""
    if locale == "ja_JP":
        if rng.random() < 0.5:
            return f"{fake.last_name()} {fake.first_name()}"  # native order, as Faker writes it
        return f"{fake.first_romanized_name()} {fake.last_romanized_name()}"
    return f"{fake.first_name()} {fake.last_name()}"


def _ip(fake: Faker, rng: random.Random) -> str:
    return rng.choice([fake.ipv4_public, fake.ipv4_private, fake.ipv4, fake.ipv6])()


def _ssn(fake: Faker) -> str:
    while not ssn_ok(ssn := fake.ssn()):
        pass
    return ssn


def _iban(fake: Faker, rng: random.Random, locale: str) -> str:
    """Faker's IBAN for the locale's country; 40% written in groups of four."""
    iban = fake.iban()
    assert iban_ok(iban) and iban[:2] == locale[-2:], (locale, iban)
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.4 else iban


_EXTENSION = re.compile(r"\s*(?:x|ext\.?)\s*\d+$")


def _keeps_trunk_prefix(phone: str, region: str) -> bool:
    """False for a national number written without the trunk '0' its region writes (Faker's ja_JP sometimes gives
    '50-5554-8885' for 050-5554-8885): phonenumbers accepts it, but people do not write numbers that way."""
    if phone.lstrip("(").startswith(("+", "00")):
        return True
    national = phonenumbers.format_number(phonenumbers.parse(phone, region), phonenumbers.PhoneNumberFormat.NATIONAL)
    return not national.lstrip("(").startswith("0") or phone.lstrip("(").startswith("0")


def _faker_phone(fake: Faker, region: str) -> str:
    """Faker's national formats for the locale, extension stripped, kept only when valid for the region."""
    while True:
        phone = _EXTENSION.sub("", fake.phone_number())
        if phone_ok(phone, region) and _keeps_trunk_prefix(phone, region):
            return phone


# National significant numbers per region: '#' is any digit. Retried until phonenumbers accepts them.
_NSN_PATTERNS = {
    "US": ["2##2######", "3##5######", "4##7######", "6##8######", "9##4######"],
    "GB": ["20########", "7#########", "161#######", "131#######", "121#######"],
    "DE": ["151########", "17#########", "30########", "89########", "40########"],
    "FR": ["6########", "7########", "1########", "4########"],
    "IN": ["98########", "97########", "99########", "8#########", "7#########"],
    "JP": ["90########", "80########", "70########", "3########", "6########"],
    "BR": ["119########", "219########", "319########", "11#######", "51#######"],
}
_PHONE_STYLES = ["e164", "spaced", "dashed", "bracketed", "national"]


def _nsn(rng: random.Random, region: str, patterns: list[str] | None = None) -> phonenumbers.PhoneNumber:
    """A random number valid for region, from one of its patterns."""
    code = phonenumbers.country_code_for_region(region)
    while True:
        pattern = rng.choice(patterns or _NSN_PATTERNS[region])
        number = phonenumbers.parse(f"+{code}" + "".join(rng.choice(string.digits) if c == "#" else c for c in pattern))
        if phonenumbers.is_valid_number(number):
            return number


def _format_phone(number: phonenumbers.PhoneNumber, region: str, style: str) -> str:
    """Write number in one style. Bracketed follows local habit: '+44 (0)20 ...' where a trunk 0 exists,
    '+1 (212) 555-0123' / '+55 (11) 9...' for area codes, '(+91) 98765 43210' otherwise."""
    fmt = phonenumbers.PhoneNumberFormat
    intl = phonenumbers.format_number(number, fmt.INTERNATIONAL)
    if style == "e164":
        return phonenumbers.format_number(number, fmt.E164)
    if style == "spaced":
        return intl
    if style == "dashed":
        return intl.replace(" ", "-")
    if style == "national":
        return phonenumbers.format_number(number, fmt.NATIONAL)
    cc, rest = intl.split(" ", 1)
    if region in ("GB", "DE", "FR"):
        return f"{cc} (0){rest}"
    if region in ("US", "BR"):
        area, tail = re.split(r"[ -]", rest, maxsplit=1)
        return f"{cc} ({area}) {tail}"
    return f"({cc}) {rest}"


# Credit cards. Each network: (name, how to make the digits). Faker-made ones are filtered to the brief's ranges.


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    """prefix + random digits + the Luhn check digit, `length` digits in all."""
    body = prefix + _digits(rng, length - len(prefix) - 1)
    check = next(d for d in "0123456789" if luhn_ok(body + d))
    return body + check


def _faker_card(fake: Faker, card_type: str, keep: Callable[[str], bool]) -> str:
    while not keep(number := fake.credit_card_number(card_type=card_type)):
        pass
    return number


_MAESTRO_PREFIXES = ("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763", "56", "57", "58")

CARD_NETWORKS: list[tuple[str, Callable[[Faker, random.Random], str]]] = [
    ("visa16", lambda f, r: f.credit_card_number(card_type="visa16")),
    ("visa19", lambda f, r: f.credit_card_number(card_type="visa19")),
    ("mastercard_51_55", lambda f, r: _faker_card(f, "mastercard", lambda n: "51" <= n[:2] <= "55")),
    ("mastercard_2221_2720", lambda f, r: _faker_card(f, "mastercard", lambda n: 2221 <= int(n[:4]) <= 2720)),
    ("amex", lambda f, r: f.credit_card_number(card_type="amex")),
    ("discover_6011", lambda f, r: _faker_card(f, "discover", lambda n: n.startswith("6011"))),
    ("discover_65", lambda f, r: _faker_card(f, "discover", lambda n: n.startswith("65"))),
    ("discover_644_649", lambda f, r: _luhn_complete(r, str(r.randint(644, 649)), 16)),
    ("diners", lambda f, r: f.credit_card_number(card_type="diners")),
    ("jcb", lambda f, r: _faker_card(f, "jcb16", lambda n: 3528 <= int(n[:4]) <= 3589)),
    ("unionpay", lambda f, r: _luhn_complete(r, "62", r.choice([16, 16, 19]))),
    ("maestro_faker", lambda f, r: _faker_card(f, "maestro", lambda n: n.startswith(_MAESTRO_PREFIXES))),
    ("maestro_long", lambda f, r: _luhn_complete(r, r.choice(_MAESTRO_PREFIXES), r.choice([16, 18, 19]))),
]
_CARD_STYLES = ["plain", "spaced", "dashed"]


def _format_card(number: str, style: str) -> str:
    """Amex 4-6-5 and 14-digit Diners 4-6-4 as embossed; everything else in groups of four."""
    if style == "plain":
        return number
    if len(number) in (14, 15) and number[0] == "3":
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return (" " if style == "spaced" else "-").join(groups)


# ---------------------------------------------------------------------------------------------------------------
# Look-alike values (never labelled)


def _date_text(rng: random.Random, lang: str) -> str:
    y, m, d = rng.randint(2019, 2030), rng.randint(1, 12), rng.randint(1, 28)
    month = MONTHS.get(lang, MONTHS["en"]).split()[m - 1]
    by_lang = {
        "en": [f"{month} {d}, {y}", f"{d} {month} {y}", f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}"],
        "de": [f"{d}. {month} {y}", f"{d:02d}.{m:02d}.{y}", f"{y}-{m:02d}-{d:02d}"],
        "fr": [f"{d} {month} {y}", f"{d:02d}/{m:02d}/{y}"],
        "es": [f"{d} de {month} de {y}", f"{d:02d}/{m:02d}/{y}"],
        "it": [f"{d} {month} {y}", f"{d:02d}/{m:02d}/{y}"],
        "nl": [f"{d} {month} {y}", f"{d:02d}-{m:02d}-{y}"],
        "pt": [f"{d} de {month} de {y}", f"{d:02d}/{m:02d}/{y}"],
        "ja": [f"{y}年{m}月{d}日", f"{y}/{m:02d}/{d:02d}"],
    }  # fmt: skip
    return rng.choice(by_lang[lang])


def _thousands(n: int, sep: str) -> str:
    return f"{n:,}".replace(",", sep)


def _indian_grouping(n: int) -> str:
    """1,25,000: the last three digits, then pairs."""
    head, tail = str(n)[:-3], str(n)[-3:]
    pairs = [head[max(i - 2, 0) : i] for i in range(len(head), 0, -2)][::-1]
    return ",".join([*pairs, tail]) if head else tail


def _money(rng: random.Random, locale: str) -> str:
    n, cents = rng.randint(10, 250_000), rng.randint(0, 99)
    by_locale = {
        "en_US": [f"${_thousands(n, ',')}.{cents:02d}", f"USD {_thousands(n, ',')}"],
        "en_GB": [f"£{_thousands(n, ',')}.{cents:02d}"],
        "en_IN": [f"₹{_indian_grouping(n)}", f"Rs. {_indian_grouping(n)}.{cents:02d}"],
        "ja_JP": [f"¥{n}", f"¥{_thousands(n, ',')}", f"{_thousands(n, ',')}円"],
        "pt_BR": [f"R$ {_thousands(n, '.')},{cents:02d}"],
        "fr_FR": [f"{_thousands(n, ' ')},{cents:02d} €"],
    }  # fmt: skip
    default = [f"€{_thousands(n, '.')},{cents:02d}", f"{_thousands(n, '.')},{cents:02d} EUR"]
    return rng.choice(by_locale.get(locale, default))


def _version(rng: random.Random) -> str:
    """Version strings; four-part ones carry a 'v' or a component over 255 so none is also an IPv4 address."""
    a, b, c = rng.randint(0, 12), rng.randint(0, 30), rng.randint(0, 40)
    windows_build = f"10.0.{rng.randint(17763, 26100)}.{rng.randint(256, 5000)}"
    return rng.choice([f"{a}.{b}.{c}", f"v{a}.{b}.{c}.{rng.randint(0, 9)}", windows_build, f"{a}.{b}.{c}-rc.{rng.randint(1, 5)}",
                       f"v{a}.{b}"])  # fmt: skip


def _tracking(rng: random.Random) -> str:
    upper = string.ascii_uppercase + string.digits
    ups = "1Z" + "".join(rng.choice(upper) for _ in range(6)) + _digits(rng, 10)
    usps = " ".join(_digits(rng, 4) for _ in range(5)) + " " + _digits(rng, 2)
    royal = "".join(rng.choice(string.ascii_uppercase) for _ in range(2)) + _digits(rng, 9) + "GB"
    return rng.choice([ups, "9400 " + usps, royal, "JJD" + _digits(rng, 18)])


def _bad_luhn(rng: random.Random) -> str:
    """16 digits whose Luhn check fails, in the same styles as real cards."""
    body = str(rng.randint(3, 6)) + _digits(rng, 14)
    good = next(d for d in "0123456789" if luhn_ok(body + d))
    number = body + rng.choice([d for d in "0123456789" if d != good])
    return _format_card(number, rng.choice(_CARD_STYLES))


def _bad_iban(fake: Faker, rng: random.Random) -> str:
    """A real-shaped IBAN with its check digits changed so that mod-97 fails."""
    iban = fake.iban()
    while iban_ok(iban):
        iban = iban[:2] + f"{rng.randint(2, 98):02d}" + iban[4:]
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def _timestamp(rng: random.Random) -> str:
    epoch = rng.randint(1_700_000_000, 1_830_000_000)
    day = f"{rng.randint(2024, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    time = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    ms = f"{rng.randint(0, 999):03d}"
    return rng.choice([f"{day}T{time}Z", f"{day} {time},{ms}", f"{day}T{time}+01:00", f"{time}.{ms}", str(epoch),
                       f"{epoch}{ms}"])  # fmt: skip


def _lookalike_value(kind: str, fake: Faker, rng: random.Random, locale: str, lang: str) -> str:
    """One look-alike value of the given kind."""
    if kind == "isbn10":
        v = fake.isbn10()
        return rng.choice([v, f"ISBN {v}", f"ISBN-10: {v}", v.replace("-", "")])
    if kind == "isbn13":
        v = fake.isbn13()
        return rng.choice([v, f"ISBN {v}", f"ISBN-13: {v}", f"ISBN {v.replace('-', '')}"])
    if kind == "order":
        marketplace = f"{_digits(rng, 3)}-{_digits(rng, 7)}-{_digits(rng, 7)}"
        return rng.choice([_digits(rng, 9), marketplace, f"SO-{_digits(rng, 6)}"])
    if kind == "invoice":
        y, n = rng.randint(2020, 2030), rng.randint(1, 99999)
        return rng.choice([f"INV-{y}-{n:06d}", f"RE-{y}-{n:05d}", f"F{y}/{n:05d}", f"FAT-{n}/{y}"])
    if kind == "postcode":
        return fake.zipcode_plus4() if locale == "en_US" and rng.random() < 0.5 else fake.postcode()
    if kind == "uuid":
        return fake.uuid4()
    if kind == "bad_iban":
        return _bad_iban(fake, rng)
    if kind == "hash":
        return rng.choice([fake.md5(), fake.sha1(), fake.sha256(), fake.sha1()[:7], "0x" + fake.md5()[:8]])
    if kind == "date":
        return _date_text(rng, lang)
    if kind == "money":
        return _money(rng, locale)
    simple = {"version": _version, "tracking": _tracking, "bad_luhn": _bad_luhn, "timestamp": _timestamp}
    return simple[kind](rng)


# ---------------------------------------------------------------------------------------------------------------
# Sections of the set


def _pii_row(rng: random.Random, pii_type: str, locale: str, value: str) -> dict[str, Any]:
    lang = _lang(locale, rng)
    templates = PII_TEMPLATES[lang].get(pii_type) or PII_TEMPLATES["en"][pii_type]
    text, entities = _fill(rng.choice(templates), {pii_type: value})
    return _row(text, entities, locale, "pii")


def _simple_type_rows(fakers: _Fakers, rng: random.Random, per_locale: int = 6) -> list[dict[str, Any]]:
    """EMAIL, PERSON and IP_ADDRESS in every main locale."""
    rows = []
    for locale in LOCALES:
        fake = fakers(locale)
        for _ in range(per_locale):
            rows.append(_pii_row(rng, "EMAIL", locale, _email(fake, rng)))
            rows.append(_pii_row(rng, "PERSON", locale, _person(fake, rng, locale)))
            rows.append(_pii_row(rng, "IP_ADDRESS", locale, _ip(fake, rng)))
    return rows


def _phone_rows(fakers: _Fakers, rng: random.Random) -> list[dict[str, Any]]:
    """Faker's national formats in every locale, then each international style twice for seven regions,
    then India's mobiles written as bare 10 digits (98xxxxxxxx)."""
    rows = []
    for locale, (region, _) in LOCALES.items():
        rows += [_pii_row(rng, "PHONE", locale, _faker_phone(fakers(locale), region)) for _ in range(8)]
    region_locale = {region: locale for locale, (region, _) in LOCALES.items()}
    for region in _NSN_PATTERNS:
        for style in _PHONE_STYLES * 2:
            phone = _format_phone(_nsn(rng, region), region, style)
            assert phone_ok(phone, region), phone
            rows.append(_pii_row(rng, "PHONE", region_locale[region], phone))
    for _ in range(6):
        mobile = phonenumbers.national_significant_number(_nsn(rng, "IN", ["98########"]))
        rows.append(_pii_row(rng, "PHONE", "en_IN", mobile))
    return rows


def _card_rows(fakers: _Fakers, rng: random.Random, per_network: int = 9) -> list[dict[str, Any]]:
    """Each network in each style, in a random main locale's sentence."""
    rows = []
    for _, make in CARD_NETWORKS:
        for i in range(per_network):
            locale = rng.choice(list(LOCALES))
            number = make(fakers(locale), rng)
            assert luhn_ok(number), number
            rows.append(_pii_row(rng, "CREDIT_CARD", locale, _format_card(number, _CARD_STYLES[i % 3])))
    return rows


def _iban_rows(fakers: _Fakers, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for locale in IBAN_MAIN_LOCALES:
        rows += [_pii_row(rng, "IBAN", locale, _iban(fakers(locale), rng, locale)) for _ in range(6)]
    for locale in IBAN_EXTRA_LOCALES:
        rows += [_pii_row(rng, "IBAN", locale, _iban(fakers(locale), rng, locale)) for _ in range(3)]
    return rows


def _ssn_rows(fakers: _Fakers, rng: random.Random, n: int = 60) -> list[dict[str, Any]]:
    return [_pii_row(rng, "US_SSN", "en_US", _ssn(fakers("en_US"))) for _ in range(n)]


def _mixed_values(fakers: _Fakers, rng: random.Random, locale: str, types: list[str]) -> dict[str, str]:
    """One value per type for a mixed row, all from the row's locale."""
    fake, region = fakers(locale), LOCALES[locale][0]
    makers = {
        "EMAIL": lambda: _email(fake, rng),
        "PERSON": lambda: _person(fake, rng, locale),
        "IP_ADDRESS": lambda: _ip(fake, rng),
        "PHONE": lambda: _any_phone(fake, rng, region),
        "CREDIT_CARD": lambda: _format_card(rng.choice(CARD_NETWORKS)[1](fake, rng), rng.choice(_CARD_STYLES)),
        "IBAN": lambda: _iban(fake, rng, locale),
        "US_SSN": lambda: _ssn(fake),
    }
    return {t: makers[t]() for t in types}


def _any_phone(fake: Faker, rng: random.Random, region: str) -> str:
    """Faker's national format, or for the seven regions with patterns, any international style."""
    if region not in _NSN_PATTERNS or rng.random() < 0.5:
        return _faker_phone(fake, region)
    return _format_phone(_nsn(rng, region), region, rng.choice(_PHONE_STYLES))


def _allowed_types(locale: str) -> list[str]:
    """Types a locale's text plausibly holds: SSNs only in en_US, IBANs only where the country has them."""
    types = ["EMAIL", "PHONE", "CREDIT_CARD", "IP_ADDRESS", "PERSON"]
    if locale in IBAN_MAIN_LOCALES:
        types.append("IBAN")
    if locale == "en_US":
        types.append("US_SSN")
    return types


def _mixed_rows(fakers: _Fakers, rng: random.Random, per_locale: int = 9) -> list[dict[str, Any]]:
    """2-3 values of different types per text: a multi-value template a third of the time, else single-value
    sentences joined, sometimes with a look-alike sentence (order number, date) after them."""
    rows = []
    for locale in LOCALES:
        lang_pool = [LOCALES[locale][1], "en"]
        for _ in range(per_locale):
            lang = rng.choice(lang_pool)
            allowed = _allowed_types(locale)
            fitting = [t for t in MIXED_TEMPLATES.get(lang, []) if set(_SLOT.findall(t)) <= set(allowed)]
            if fitting and rng.random() < 0.35:
                template = rng.choice(fitting)
            else:
                types = rng.sample(allowed, rng.choice([2, 2, 3]))
                parts = [rng.choice(PII_TEMPLATES[lang].get(t) or PII_TEMPLATES["en"][t]) for t in types]
                parts = [p if p[-1] in ".!?,:。" else p + ("。" if lang == "ja" else ".") for p in parts]
                parts.sort(key=lambda p: not p.endswith((",", ":")))  # a salutation ("Dear {PERSON},") opens the text
                if rng.random() < 0.3:
                    parts.append(_lookalike_sentence(fakers, rng, locale, lang, rng.choice(["order", "date"])))
                template = ("" if lang == "ja" else rng.choice([" ", " ", "\n"])).join(parts)
            text, entities = _fill(template, _mixed_values(fakers, rng, locale, _SLOT.findall(template)))
            rows.append(_row(text, entities, locale, "mixed"))
    return rows


def _lookalike_sentence(fakers: _Fakers, rng: random.Random, locale: str, lang: str, kind: str) -> str:
    templates = LOOKALIKE_TEMPLATES[kind].get(lang) or LOOKALIKE_TEMPLATES[kind]["en"]
    value = _lookalike_value(kind, fakers(locale), rng, locale, lang)
    return rng.choice(templates).replace("{X}", value)


def _lookalike_rows(fakers: _Fakers, rng: random.Random, per_kind: int = 15) -> list[dict[str, Any]]:
    """Each look-alike kind in rotating locales. bad_iban draws from IBAN locales so the shape is a real country's."""
    rows, locales = [], list(LOCALES)
    for k, kind in enumerate(LOOKALIKE_TEMPLATES):
        for i in range(per_kind):
            locale = rng.choice(IBAN_MAIN_LOCALES) if kind == "bad_iban" else locales[(k + i) % len(locales)]
            text = _lookalike_sentence(fakers, rng, locale, _lang(locale, rng), kind)
            rows.append(_row(text, [], locale, "lookalike"))
    return rows


def _city(fake: Faker) -> str:
    """A city from the locale. Where the address provider keeps a city list, pick from it sorted: it_IT builds the
    list from a set, whose order (and so Faker's seeded pick) changes with PYTHONHASHSEED."""
    for provider in fake.get_providers():
        if isinstance(getattr(provider, "cities", None), (list, tuple)):
            return fake.random_element(sorted(provider.cities))
    return fake.city()


def _clean_rows(fakers: _Fakers, rng: random.Random, per_locale: int = 12) -> list[dict[str, Any]]:
    """Faker lorem sentences and paragraphs (English words for en_GB/en_IN, whose lorem is Latin) and a few
    everyday sentences, some naming a city. A text already used is drawn again, so no row is counted twice."""
    rows, seen = [], set()
    for locale, (_, lang) in LOCALES.items():
        fake = fakers(locale)
        words = EnglishLorem.word_list if locale in ("en_GB", "en_IN") else None
        i = 0
        while i < per_locale:
            choice = i % 4
            if choice == 0:
                text = fake.sentence(ext_word_list=words)
            elif choice == 1:
                text = fake.paragraph(nb_sentences=rng.randint(2, 4), ext_word_list=words)
            elif choice == 2:
                text = " ".join(fake.sentences(nb=rng.randint(2, 3), ext_word_list=words))
            else:
                text = rng.choice(CLEAN_TEMPLATES[lang]).replace("{CITY}", _city(fake))
            if text not in seen:
                seen.add(text)
                rows.append(_row(text, [], locale, "clean"))
                i += 1
    return rows


def generate_cases(seed: int = SEED) -> list[dict[str, Any]]:
    """The whole labelled set, deterministic in seed (and the pinned Faker/phonenumbers versions)."""
    rng, fakers = random.Random(seed), _Fakers(seed)
    return [
        *_simple_type_rows(fakers, rng),
        *_phone_rows(fakers, rng),
        *_card_rows(fakers, rng),
        *_iban_rows(fakers, rng),
        *_ssn_rows(fakers, rng),
        *_mixed_rows(fakers, rng),
        *_lookalike_rows(fakers, rng),
        *_clean_rows(fakers, rng),
    ]


def to_jsonl(cases: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases)


def summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Row counts per kind and locale; per type, the rows holding it and the entities."""
    return {
        "rows": len(cases),
        "kinds": dict(Counter(c["kind"] for c in cases)),
        "rows_per_type": {t: sum(any(e["type"] == t for e in c["entities"]) for c in cases) for t in TYPES},
        "entities_per_type": dict(Counter(e["type"] for c in cases for e in c["entities"])),
        "locales": dict(Counter(c["locale"] for c in cases)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate the labelled set")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--cases", type=Path, default=CASES_PATH)
    args = parser.parse_args()
    cases = generate_cases(args.seed)
    if args.write:
        args.cases.parent.mkdir(parents=True, exist_ok=True)
        args.cases.write_text(to_jsonl(cases), encoding="utf-8")
    written = str(args.cases) if args.write else None
    print(json.dumps({"written": written, **summary(cases)}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
