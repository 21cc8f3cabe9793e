"""Tests for connector.sending.phones: numbers as people type them, read into E.164 and AllMySMS's form."""

import pytest

from connector.sending import phones

# --- parse: accepted numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "0612345678",
        "06 12 34 56 78",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "+33612345678",
        "+33 6 12 34 56 78",
        "+33-6-12-34-56-78",
        "+33.6.12.34.56.78",
        "+33 (0)6 12 34 56 78",
        "0033612345678",
        "0033 6 12 34 56 78",
        "0033.6.12.34.56.78",
        "33612345678",
        "33 6 12 34 56 78",
        "  06 12 34 56 78  ",
        "\t0612345678\n",
    ],
)
def test_every_way_of_writing_a_french_mobile_reads_as_the_same_e164_number(raw):
    assert phones.parse(raw, "FR") == ("+33612345678", None)


def test_a_french_landline_is_accepted():
    assert phones.parse("01 23 45 67 89", "FR") == ("+33123456789", None)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [("+44 7911 123456", "+447911123456"), ("+32 470 12 34 56", "+32470123456"), ("+1 202 555 0143", "+12025550143")],
)
def test_a_foreign_number_with_its_country_code_is_accepted(raw, e164):
    assert phones.parse(raw, "FR") == (e164, None)


def test_a_number_without_country_code_is_read_in_the_given_region():
    assert phones.parse("07911 123456", "GB") == ("+447911123456", None)
    # The same digits are not a French number.
    assert phones.parse("07911 123456", "FR")[0] is None


# --- parse: refused numbers, each with its reason ---------------------------------------------


LETTERS = "not a phone number: only digits, spaces and . - ( ) / are allowed, with + only at the start"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("0612", "too short to be a phone number"),
        ("+33 6 12", "too short to be a phone number"),
        ("06123456789", "too long to be a phone number"),
        ("+33 6 12 34 56 78 90 12 34 56", "too long to be a phone number"),
        ("+33", "not a phone number"),
        ("0033", "not a phone number"),
        ("+44 7700 900123", "not a number in use in that country"),
        ("+999612345678", "the country code is not valid"),
        ("00999612345678", "the country code is not valid"),
        ("+999 6 12 34 56 78", "the country code is not valid"),
    ],
)
def test_an_invalid_number_is_refused_with_its_reason(raw, reason):
    assert phones.parse(raw, "FR") == (None, reason)


@pytest.mark.parametrize(
    "raw",
    [
        "06abcdefgh",
        "abc",
        "06 12 34 AB CD",
        "0612 ABC 678",
        "06 12 34 56 7a",
        "0612345678x",
        "tel: 0612345678",
        "06 12 34 56 78 ext 5",
        "+33 6 12 34 56 78 #",
    ],
)
def test_a_number_with_letters_or_symbols_is_refused_rather_than_read_as_keypad_digits(raw):
    assert phones.parse(raw, "FR") == (None, LETTERS)


@pytest.mark.parametrize("raw", ["", "   "])
def test_an_empty_number_is_refused(raw):
    e164, reason = phones.parse(raw, "FR")
    assert e164 is None
    assert reason.startswith("not a phone number")


# --- split ------------------------------------------------------------------------------------


def test_split_cuts_a_pasted_text_on_commas_semicolons_and_new_lines():
    text = "0611111111, 0622222222;0633333333\n0644444444\r\n0655555555"
    assert phones.split(text) == ["0611111111", "0622222222", "0633333333", "0644444444", "0655555555"]


def test_split_drops_blank_entries_and_trims_each_number():
    assert phones.split(" 0611111111 ,, ; \n\n;0622222222 ,\n") == ["0611111111", "0622222222"]


def test_split_keeps_the_spaces_inside_one_number():
    assert phones.split("06 11 11 11 11; +33 6 22 22 22 22") == ["06 11 11 11 11", "+33 6 22 22 22 22"]


@pytest.mark.parametrize("text", ["", " ", ",", " ; \n , \r\n"])
def test_split_of_a_text_without_numbers_is_empty(text):
    assert phones.split(text) == []


# --- upstream / from_upstream / mask ---------------------------------------------------------


def test_upstream_writes_international_digits_without_the_plus():
    assert phones.upstream("+33612345678") == "33612345678"


@pytest.mark.parametrize("value", ["33612345678", 33612345678, "+33612345678", " 33 6 12 34 56 78 "])
def test_from_upstream_reads_allmysms_numbers_as_e164(value):
    assert phones.from_upstream(value) == "+33612345678"


@pytest.mark.parametrize("value", ["", None, "n/a"])
def test_from_upstream_of_something_without_digits_is_empty(value):
    assert phones.from_upstream(value) == ""


def test_upstream_and_from_upstream_are_inverse():
    assert phones.from_upstream(phones.upstream("+447911123456")) == "+447911123456"


def test_mask_keeps_only_the_country_code_and_the_last_two_digits():
    masked = phones.mask("+33612345678")
    assert masked == "+33…78"
    assert "123456" not in masked


@pytest.mark.parametrize("value", ["", "+33", "+3361"])
def test_mask_of_a_very_short_value_shows_nothing_of_it(value):
    assert phones.mask(value) == "…"


def test_the_shortcut_for_plainly_written_numbers_agrees_with_the_full_parser():
    import random

    import phonenumbers

    rng = random.Random(1234)

    def full_parser(raw, region):
        text = raw.strip()
        text = "+" + text[2:] if text.startswith("00") else text
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_valid_number(number):
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    checked = 0
    for region in ("FR", "DE", "BE", "CH", "GB", "IT", "US"):
        for _ in range(3000):
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 13)))
            raw = rng.choice(["0", "+33", "0033", "+49", "+", "", "+33 0", "06", "07"]) + digits
            if rng.random() < 0.3:
                raw = " ".join(raw[i : i + 2] for i in range(0, len(raw), 2))
            assert phones.parse(raw, region)[0] == full_parser(raw, region), (region, raw)
            checked += 1
    assert checked == 21000
