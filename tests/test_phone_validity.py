"""phones.parse reads validity from the library's metadata compiled once (phones.valid): it must answer exactly
what the full parser does (phonenumbers.parse, is_valid_number, format_number in E.164), reasons included, on
every region's example numbers and on tens of thousands of random and mutated ones."""

from __future__ import annotations

import random
import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import NumberParseException, PhoneMetadata

from connector.sending import phones

_TYPES = (
    "general_desc",
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)
_REASONS = {
    phonenumbers.ValidationResult.TOO_SHORT: "too short to be a phone number",
    phonenumbers.ValidationResult.TOO_LONG: "too long to be a phone number",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "the country code is not valid",
    phonenumbers.ValidationResult.INVALID_LENGTH: "the number of digits does not fit this country",
}
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def full_parser(raw: str, region: str) -> tuple[str | None, str | None]:
    """What phones.parse answered before it had a fast path: the library alone, after the same checks of what
    was typed."""
    text = raw.strip()
    if not text:
        return None, "not a phone number: it is empty"
    if not phones._TYPED.fullmatch(text):
        return None, "not a phone number: only digits, spaces and . - ( ) / are allowed, with + only at the start"
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            return None, "the country code is not valid"
        return None, "not a phone number"
    if not phonenumbers.is_valid_number(number):
        return None, _REASONS.get(phonenumbers.is_possible_number_with_reason(number)) or (
            "not a number in use in that country"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def _examples() -> list[tuple[int, str, str]]:
    """(country code, national significant number, region) of every example number of every type, of every
    region and of every non-geographic code."""
    found = []
    metadata = [(PhoneMetadata.metadata_for_region(r), r) for r in REGIONS]
    metadata += [
        (PhoneMetadata.metadata_for_nongeo_region(code), "001")
        for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS
    ]
    for data, region in metadata:
        for name in _TYPES:
            desc = getattr(data, name, None)
            example = getattr(desc, "example_number", None)
            if example:
                found.append((data.country_code, example, region))
    return found


EXAMPLES = _examples()


def _mutations(national: str, rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        digits = list(national)
        kind = rng.randrange(4)
        at = rng.randrange(len(digits))
        if kind == 0:
            digits[at] = str(rng.randrange(10))
        elif kind == 1 and len(digits) > 1:
            del digits[at]
        elif kind == 2:
            digits.insert(at, str(rng.randrange(10)))
        else:
            digits[: rng.randrange(1, 4)] = [str(rng.randrange(10)) for _ in range(rng.randrange(1, 4))]
        out.append("".join(digits))
    return out


def _library_valid(country_code: int, national: str) -> bool:
    return phonenumbers.is_valid_number(phonenumbers.parse(f"+{country_code}{national}"))


def test_there_are_example_numbers_of_every_region():
    assert len({region for _, _, region in EXAMPLES}) == len(REGIONS) + 1  # and 001, the non-geographic codes
    assert len(EXAMPLES) > 1000


def test_every_example_number_of_every_region_is_as_valid_as_the_library_says():
    for country_code, national, _ in EXAMPLES:
        number = phonenumbers.parse(f"+{country_code}{national}")
        nsn = phonenumbers.national_significant_number(number)
        assert phones.valid(country_code, nsn) == phonenumbers.is_valid_number(number), (country_code, national)


def test_mutated_example_numbers_are_as_valid_as_the_library_says():
    rng = random.Random(20261130)
    checked = valid = 0
    for country_code, national, _ in EXAMPLES:
        for mutated in _mutations(national, rng, 24):
            try:
                number = phonenumbers.parse(f"+{country_code}{mutated}")
            except NumberParseException:
                continue
            expected = phonenumbers.is_valid_number(number)
            nsn = phonenumbers.national_significant_number(number)
            assert phones.valid(country_code, nsn) == expected, (country_code, mutated)
            checked += 1
            valid += expected
    # Enough of both answers for the comparison to mean something.
    assert checked > 20_000 and 0.1 < valid / checked < 0.9


def test_every_shape_of_writing_a_number_reads_as_the_full_parser_reads_it():
    """National (trunk 0), with the country code (+, 00, none), with separators, in the number's own region
    and in others: phones.parse and the full parser give the same number or the same reason."""
    rng = random.Random(7)
    home_regions = ["FR", "DE", "BE", "GB", "US", "IT", "RU", "KZ", "AU", "CH", "NL", "ES", "RE", "GP", "JP", "BR"]
    checked = 0
    for country_code, national, region in EXAMPLES:
        for digits in [national, *_mutations(national, rng, 3)]:
            shapes = [
                f"+{country_code}{digits}",
                f"00{country_code} {digits}",
                f"+{country_code} ({digits[:2]}) {digits[2:]}",
            ]
            prefix = PhoneMetadata.metadata_for_region(region).national_prefix if region != "001" else None
            if prefix:
                shapes += [f"{prefix}{digits}", f"{prefix}{digits[:1]} {digits[1:4]}.{digits[4:]}"]
            for shape in shapes:
                for reading in {region if region != "001" else "FR", rng.choice(home_regions)}:
                    assert phones.parse(shape, reading) == full_parser(shape, reading), (shape, reading)
                    checked += 1
    assert checked > 20_000


def test_random_digits_read_in_plain_regions_read_as_the_full_parser_reads_them():
    rng = random.Random(11)
    for _ in range(20_000):
        region = rng.choice(["FR", "DE", "BE", "AT", "GB", "IT", "CH", "NL", "RE", "GP", "KZ", "MA"])
        digits = "".join(str(rng.randrange(10)) for _ in range(rng.randrange(3, 16)))
        shape = rng.choice(["0" + digits, "+" + digits, "00" + digits, digits, "0 " + digits[:3] + "-" + digits[3:]])
        assert phones.parse(shape, region) == full_parser(shape, region), (shape, region)


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(
    region=st.sampled_from(REGIONS),
    digits=st.text(alphabet="0123456789", min_size=1, max_size=17),
    shape=st.sampled_from(["0{}", "+{}", "00{}", "{}", "+33 {}", "+1 {}", "+44 {}", "+7 {}"]),
)
def test_any_digits_in_any_region_read_as_the_full_parser_reads_them(region, digits, shape):
    text = shape.format(digits)
    assert phones.parse(text, region) == full_parser(text, region)


@pytest.mark.parametrize(
    ("country_code", "national", "region"),
    [(1, "2025550143", "US"), (1, "6135550143", "CA"), (44, "7624123456", "IM"), (7, "7012345678", "KZ")],
)
def test_a_code_shared_by_several_countries_is_read_for_the_right_one(country_code, national, region):
    assert phones.valid(country_code, national) == _library_valid(country_code, national)
    assert phones.region(f"+{country_code}{national}") == region


def test_no_pattern_of_the_metadata_changes_meaning_when_types_are_joined():
    """phones joins a region's type patterns into one alternation: a back-reference or an inline flag would
    mean something else there."""
    risky = re.compile(r"\\[1-9]|\(\?[aiLmsux]|\(\?P")
    for data in [PhoneMetadata.metadata_for_region(r) for r in REGIONS] + [
        PhoneMetadata.metadata_for_nongeo_region(code) for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS
    ]:
        for name in _TYPES:
            pattern = getattr(getattr(data, name, None), "national_number_pattern", None) or ""
            assert not risky.search(pattern), (data.id, name, pattern)
