"""Phone numbers as people type them, read into E.164 and into the form AllMySMS expects."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber, ValidationResult

_SEPARATORS = re.compile(r"[,;\r\n]+")
# Digits and the separators people type. Letters are refused: the library would read them as
# keypad digits and turn a typo into somebody else's number.
_TYPED = re.compile(r"\(?\+?[0-9\s().\-/]+")  # "(+33) 6 …" too
_PUNCTUATION = re.compile(r"[\s().\-/]")

_POSSIBLE_REASONS = {
    ValidationResult.TOO_SHORT: "too short to be a phone number",
    ValidationResult.TOO_LONG: "too long to be a phone number",
    ValidationResult.INVALID_COUNTRY_CODE: "the country code is not valid",
    ValidationResult.INVALID_LENGTH: "the number of digits does not fit this country",
}


def split(text: str) -> list[str]:
    """One pasted text of numbers, separated by commas, semicolons or new lines, as a list."""
    return [part.strip() for part in _SEPARATORS.split(text) if part.strip()]


def parse(raw: str, region: str) -> tuple[str | None, str | None]:
    """``(e164, None)`` for a valid number, ``(None, reason)`` otherwise."""
    text = raw.strip()
    if not text:
        return None, "not a phone number: it is empty"
    if not _TYPED.fullmatch(text):
        return None, "not a phone number: only digits, spaces and . - ( ) / are allowed, with + only at the start"
    if text.startswith("00"):
        # 0033… is how French people write an international number; the library wants +33….
        text = "+" + text[2:]
    number = _plain(text, region)
    if number is None:
        try:
            number = phonenumbers.parse(text, region)
        except NumberParseException as exc:
            if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
                return None, "the country code is not valid"
            return None, "not a phone number"
    if not phonenumbers.is_valid_number(number):
        reason = _POSSIBLE_REASONS.get(phonenumbers.is_possible_number_with_reason(number))
        return None, reason or "not a number in use in that country"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


@lru_cache(maxsize=64)
def _trunk(region: str) -> tuple[str, bool]:
    """The region's country code, and whether its numbers are written plainly: a trunk prefix of '0'
    and no other national parsing rule (France, Germany, Belgium…)."""
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return "", False
    plain = (
        metadata.national_prefix == "0"
        and metadata.national_prefix_for_parsing in (None, "0")
        and metadata.national_prefix_transform_rule is None
    )
    return str(metadata.country_code), plain


def _plain(text: str, region: str) -> PhoneNumber | None:
    """The number without the library's general parser, for the two shapes most lists hold: a national
    number with its trunk 0 (06 12 34 56 78) or the region's own country code (+33 6 12 34 56 78).

    phonenumbers.parse costs two thirds of reading a number; for these shapes its result is known,
    and validity is still decided by the library. Anything else goes through the full parser.
    """
    country, plain = _trunk(region)
    if not plain:
        return None
    digits = _PUNCTUATION.sub("", text)
    if digits.startswith("+" + country):
        national = digits[len(country) + 1 :]
    elif digits.startswith("0"):
        national = digits[1:]
    else:
        return None
    if not national.isdigit() or not national.isascii() or national.startswith("0") or len(national) > 15:
        return None
    return PhoneNumber(country_code=int(country), national_number=int(national))


def upstream(e164: str) -> str:
    """AllMySMS writes numbers as international digits without the plus: 33612345678."""
    return e164[1:]


_LANDLINE_TYPES = {
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.VOIP,
}


def region(e164: str) -> str | None:
    """The country (ISO 3166 two letters) of a valid E.164 number, or None for the numbers of no country
    (+800, +882…)."""
    for length in (1, 2, 3):
        regions = _regions(e164[1 : 1 + length])
        if regions:
            break
    else:
        return None
    # A country code shared by several countries (+1, +262, +7…) needs the whole number to tell them apart.
    found = regions[0] if len(regions) == 1 else phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    return found if found and found.isalpha() and found != "ZZ" else None


@lru_cache(maxsize=1024)
def _regions(country_code: str) -> tuple[str, ...]:
    return tuple(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(country_code), ())) if country_code.isdigit() else ()


def french_landline_problem(e164: str) -> str | None:
    """Why ``e164`` cannot be the caller number of a voice message, or None: AllMySMS takes a French
    landline (01–05, 09) and refuses mobiles for bulk voice sends."""
    if not e164.startswith("+33"):
        return "not a French number; voice messages are sent from a French landline (01 to 05, or 09)"
    kind = phonenumbers.number_type(phonenumbers.parse(e164))
    if kind == phonenumbers.PhoneNumberType.MOBILE:
        return "a mobile number; AllMySMS sends voice messages from a French landline (01 to 05, or 09)"
    if kind not in _LANDLINE_TYPES:
        return "not a landline; AllMySMS sends voice messages from a French landline (01 to 05, or 09)"
    return None


def national(e164: str) -> str:
    """A French number as written in France, 0 and nine digits (how AllMySMS's voice API wants `from`)."""
    return "0" + e164[3:] if e164.startswith("+33") else e164[1:]


def from_upstream(value: object) -> str:
    """A number as AllMySMS returns it (336…, sometimes with a plus), as E.164."""
    digits = re.sub(r"\D", "", str(value))
    return "+" + digits if digits else ""


def mask(e164: str) -> str:
    """A number fit for logs: country code and the last two digits."""
    return e164[:3] + "…" + e164[-2:] if len(e164) > 6 else "…"
