"""Phone numbers as people type them, read into E.164 and into the form AllMySMS expects."""

from __future__ import annotations

import re
from functools import cache, lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, ValidationResult

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
    if not (text.isdigit() and text.isascii()) and not _TYPED.fullmatch(text):
        return None, "not a phone number: only digits, spaces and . - ( ) / are allowed, with + only at the start"
    if text.startswith("00"):
        # 0033… is how French people write an international number; the library wants +33….
        text = "+" + text[2:]
    plain = _plain(text, region)
    if plain is not None and valid(plain[0], plain[1]):
        return plain[2], None
    # Anything else, and why a number is refused, is the library's to say.
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            return None, "the country code is not valid"
        return None, "not a phone number"
    if not valid(number.country_code or 0, phonenumbers.national_significant_number(number)):
        reason = _POSSIBLE_REASONS.get(phonenumbers.is_possible_number_with_reason(number))
        return None, reason or "not a number in use in that country"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


@lru_cache(maxsize=64)
def _trunk(region: str) -> tuple[str, int, bool, re.Pattern[str] | None]:
    """The region's country code, whether its numbers are written plainly (a trunk prefix of '0' and no other
    national parsing rule: France, Germany, Belgium…), and its international call prefix, which the library
    reads first (Israel's 019 is one: 019 19… is a call abroad, not the national 19…)."""
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return "", 0, False, None
    plain = (
        metadata.national_prefix == "0"
        and metadata.national_prefix_for_parsing in (None, "0")
        and metadata.national_prefix_transform_rule is None
    )
    abroad = re.compile(metadata.international_prefix) if metadata.international_prefix else None
    code = metadata.country_code or 0
    return str(code), code, plain, abroad


def _plain(text: str, region: str) -> tuple[int, str, str] | None:
    """The country code, national significant number and E.164 form (what format_number writes for a number
    with no leading zero to keep) without the library's general parser, for the two shapes most lists hold:
    a number with its country code (+33 6 12 34 56 78, +44 7911 123456) or a national number with its trunk
    0 (06 12 34 56 78) in a region that writes them so.

    phonenumbers.parse costs two thirds of reading a number; for these shapes its result is known when the
    number is valid (the library keeps a trunk 0 only when the number without it is not even of the country's
    general shape, and then it is not valid). An invalid one goes through the full parser, for its reason.
    """
    digits = text if text.isdigit() else _PUNCTUATION.sub("", text)
    if digits.startswith("+"):
        return _international(digits[1:])
    country, code, plain, abroad = _trunk(region)
    if not plain or not digits.startswith("0") or (abroad and abroad.match(digits)):
        return None
    national = digits[1:]
    if not national.isdigit() or not national.isascii() or national.startswith("0") or len(national) > 15:
        return None
    return code, national, "+" + country + national


def _international(digits: str) -> tuple[int, str, str] | None:
    """+``digits`` read as the library reads it: the country code is the shortest of one to three digits that
    is one; the rest is the national number unless it starts with what the country's parsing rule would take
    off (a trunk 0, a carrier code), or with 0 (kept in front, as Italy's are)."""
    if not digits.isdigit() or not digits.isascii() or digits.startswith("0"):
        return None
    for length in (1, 2, 3):
        code = int(digits[:length])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[length:]
    if not 2 <= len(national) <= 15 or national.startswith("0") or _strips(code, national):
        return None
    return code, national, "+" + digits


def _strips(country_code: int, national: str) -> bool:
    """Whether the library's national parsing rule for this code (its main region's) could take something off
    the front of ``national``."""
    rule = _prefix_rule(country_code)
    return rule is None or rule.match(national) is not None


@cache  # one per country code
def _prefix_rule(country_code: int) -> re.Pattern[str] | None:
    """The national_prefix_for_parsing of the code's main region (what the library reads a number with this
    code by); a pattern matching nothing when there is none, None when there is no such region."""
    main = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, main)
    if metadata is None:
        return None
    return re.compile(metadata.national_prefix_for_parsing or r"(?!)")


# --- Validity: phonenumbers.is_valid_number's answer, read from the same metadata at a fraction of its cost.
#
# The library decides validity from the country code and the national significant number alone: it finds the
# region (the only one of the code, or among those sharing it the first whose leading digits match or, lacking
# leading digits, whose numbers of some type match), then asks whether the number matches the region's general
# description and one of its types' (each type: a set of possible lengths and a pattern the whole number must
# match). It compiles every pattern again on each call, which made validity most of the cost of a large send.
# Here each region's patterns are compiled once, and the types possible at a length are joined into one
# alternation: a whole-string match of (?:a)|(?:b) is a whole-string match of a or of b. None of the metadata's
# patterns has a back-reference or an inline flag that joining could change (tests/test_phone_validity.py checks
# the answer against the library's on every region's example numbers and on random and mutated ones).

# The order is the library's (_number_type_helper); whether a number matches one of them is all validity asks.
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail")


class _Region:
    """One region's (or non-geographic code's) metadata, compiled to answer "is this number of some type"."""

    def __init__(self, metadata: PhoneMetadata):
        self.country_code = metadata.country_code
        self.leading_digits = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
        self._general = _description(metadata.general_desc)
        names = [*_TYPES, "fixed_line"]
        if not metadata.same_mobile_and_fixed_line_pattern:
            # The library asks for mobile only when its pattern differs from fixed lines' (a fixed line matching
            # is valid whatever mobile says).
            names.append("mobile")
        self._types = [found for found in (_description(getattr(metadata, name)) for name in names) if found]
        self._by_length: dict[int, re.Pattern[str] | None] = {}

    def typed(self, national: str) -> bool:
        """Whether ``national`` is a number of some type here: _number_type_helper(...) != UNKNOWN."""
        length = len(national)
        general = self._general
        if general is None or (general[0] and length not in general[0]) or not general[1].fullmatch(national):
            return False
        try:
            types = self._by_length[length]
        except KeyError:
            types = self._by_length[length] = self._alternation(length)
        return types is not None and types.fullmatch(national) is not None

    def _alternation(self, length: int) -> re.Pattern[str] | None:
        patterns = [pattern.pattern for lengths, pattern in self._types if not lengths or length in lengths]
        return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)) if patterns else None


def _description(desc: object) -> tuple[frozenset[int], re.Pattern[str]] | None:
    """A number description's possible lengths (empty: any) and pattern; None for one no number can match
    (absent, or without a pattern), as _is_number_matching_desc reads it."""
    pattern = getattr(desc, "national_number_pattern", None)
    if not pattern:
        return None
    return frozenset(getattr(desc, "possible_length", None) or ()), re.compile(pattern)


@cache  # some two hundred codes at most, each a few compiled patterns
def _code(country_code: int) -> tuple[tuple[bool, _Region | None], ...]:
    """The regions of a country code, in the library's order, as (non-geographic, compiled metadata)."""
    found = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
            metadata = PhoneMetadata.metadata_for_nongeo_region(country_code, None)
        else:
            metadata = PhoneMetadata.metadata_for_region(region, None)
        found.append((region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY, _Region(metadata) if metadata else None))
    return tuple(found)


def valid(country_code: int, national: str) -> bool:
    """phonenumbers.is_valid_number for the number of this country code and national significant number
    (leading zeros included, as national_significant_number writes it)."""
    regions = _code(country_code)
    if len(regions) == 1:
        nongeo, found = regions[0]
        # is_valid_number_for_region: the region's own metadata, and its country code the number's.
        if found is None or (not nongeo and found.country_code != country_code):
            return False
        return found.typed(national)
    # A code shared by several regions (+1, +44, +7…): the first whose leading digits match, or lacking
    # those, whose numbers this one is (region_code_for_number), then validity there. (No code, none: False.)
    for _, region in regions:
        if region is None:
            continue
        if region.leading_digits is not None:
            if region.leading_digits.match(national):
                return region.country_code == country_code and region.typed(national)
        elif region.typed(national):
            return region.country_code == country_code
    return False


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
