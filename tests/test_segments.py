"""Tests for connector.sending.segments: encoding choice, unit counts and part splitting of SMS texts."""

import dataclasses
import random
import string

import pytest

from connector.sending.segments import (
    ESCAPE,
    GSM7_BASIC,
    GSM7_BASIC_TABLE,
    GSM7_EXTENSION,
    GSM7_EXTENSION_TABLE,
    Analysis,
    analyse,
    is_gsm7,
)

EMOJI = "\U0001f600"  # outside the BMP: a surrogate pair in UTF-16


# --- the character tables -------------------------------------------------------------------


def test_the_basic_table_has_128_distinct_positions():
    assert len(GSM7_BASIC_TABLE) == 128
    assert len(set(GSM7_BASIC_TABLE)) == 128


def test_the_escape_position_is_not_a_character_a_text_may_use():
    assert GSM7_BASIC_TABLE[0x1B] == ESCAPE
    assert ESCAPE not in GSM7_BASIC
    assert len(GSM7_BASIC) == 127
    assert not is_gsm7(ESCAPE)


@pytest.mark.parametrize(
    ("code", "char"),
    [
        (0x00, "@"),
        (0x01, "£"),
        (0x09, "Ç"),
        (0x0A, "\n"),
        (0x0D, "\r"),
        (0x10, "Δ"),
        (0x11, "_"),
        (0x1F, "É"),
        (0x20, " "),
        (0x24, "¤"),
        (0x40, "¡"),
        (0x5B, "Ä"),
        (0x5F, "§"),
        (0x60, "¿"),
        (0x7B, "ä"),
        (0x7F, "à"),
    ],
)
def test_basic_table_characters_sit_at_their_gsm_03_38_code(code, char):
    assert GSM7_BASIC_TABLE[code] == char


def test_the_extension_table_has_exactly_the_ten_escaped_characters():
    assert len(GSM7_EXTENSION_TABLE) == 10
    assert GSM7_EXTENSION == set("\f^{}\\[~]|€")
    assert not GSM7_EXTENSION & GSM7_BASIC


def test_every_printable_ascii_character_except_backtick_is_gsm7():
    outside = [c for c in string.printable if c not in GSM7_BASIC | GSM7_EXTENSION]
    # string.printable also holds \t and \v, which GSM 03.38 lacks too.
    assert sorted(outside) == sorted("`\t\x0b")


# --- is_gsm7 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, world!",
        "Ça va? Ñoño, Øresund, café à la crème, Δ Σ Ω",
        "price: 5€ {x} [y] ~z | a\\b ^",
        "line\nbreak\r\f",
    ],
)
def test_texts_made_only_of_gsm_characters_are_gsm7(text):
    assert is_gsm7(text)


@pytest.mark.parametrize(
    "text",
    ["ça", "`code`", "crème brûlée", "tab\there", "naïve", "olá", "ê", "✓ done", EMOJI, "日本"],
)
def test_a_single_character_outside_both_tables_makes_a_text_not_gsm7(text):
    assert not is_gsm7(text)


def test_lower_case_c_cedilla_forces_ucs2_while_upper_case_stays_gsm7():
    assert analyse("Ça marche").encoding == "GSM-7"
    assert analyse("ça marche").encoding == "UCS-2"


def test_a_backtick_forces_ucs2():
    assert analyse("run `make`").encoding == "UCS-2"
    assert analyse("run 'make'").encoding == "GSM-7"


# --- GSM-7 lengths and parts ----------------------------------------------------------------


def test_an_empty_text_is_one_gsm7_part_of_zero_units():
    assert analyse("") == Analysis("GSM-7", 0, 0, 1, 160, 160)


def test_160_septets_fit_in_one_part_and_161_need_two():
    assert analyse("a" * 160) == Analysis("GSM-7", 160, 160, 1, 160, 0)
    assert analyse("a" * 161) == Analysis("GSM-7", 161, 161, 2, 153, 145)


def test_306_septets_fill_two_parts_and_307_need_three():
    assert analyse("a" * 306) == Analysis("GSM-7", 306, 306, 2, 153, 0)
    assert analyse("a" * 307) == Analysis("GSM-7", 307, 307, 3, 153, 152)


def test_extension_characters_count_two_septets():
    assert analyse("€") == Analysis("GSM-7", 1, 2, 1, 160, 158)
    assert analyse("{a}").units == 5


def test_80_euro_signs_fill_one_part_and_81_need_two():
    assert analyse("€" * 80) == Analysis("GSM-7", 80, 160, 1, 160, 0)
    # 76 pairs (152 septets) fill the first part; the other 5 pairs take 10 septets of the second.
    assert analyse("€" * 81) == Analysis("GSM-7", 81, 162, 2, 153, 143)


def test_an_escape_pair_at_position_153_moves_to_the_next_part():
    text = "a" * 152 + "€" + "a" * 10
    # Part 1 holds 152 septets and one unused; part 2 holds the pair and 10 septets.
    assert analyse(text) == Analysis("GSM-7", 163, 164, 2, 153, 141)


def test_a_moved_escape_pair_can_cost_an_extra_part():
    text = "a" * 152 + "€" + "a" * 152
    # 306 septets would fill two parts exactly, but the unsplittable pair pushes one septet out.
    assert analyse(text) == Analysis("GSM-7", 305, 306, 3, 153, 152)


def test_an_escape_pair_that_ends_exactly_at_153_stays_in_the_part():
    text = "a" * 151 + "€" + "a" * 10
    assert analyse(text) == Analysis("GSM-7", 162, 163, 2, 153, 143)


def test_gsm_accented_letters_cost_one_septet():
    assert analyse("é" * 160) == Analysis("GSM-7", 160, 160, 1, 160, 0)


# --- UCS-2 lengths and parts ----------------------------------------------------------------


def test_70_ucs2_units_fit_in_one_part_and_71_need_two():
    assert analyse("ç" * 70) == Analysis("UCS-2", 70, 70, 1, 70, 0)
    assert analyse("ç" * 71) == Analysis("UCS-2", 71, 71, 2, 67, 63)


def test_134_ucs2_units_fill_two_parts_and_135_need_three():
    assert analyse("ç" * 134) == Analysis("UCS-2", 134, 134, 2, 67, 0)
    assert analyse("ç" * 135) == Analysis("UCS-2", 135, 135, 3, 67, 66)


def test_an_emoji_counts_one_character_but_two_units():
    assert analyse(EMOJI) == Analysis("UCS-2", 1, 2, 1, 70, 68)


def test_an_emoji_may_end_a_single_part_exactly_at_70_units():
    assert analyse("a" * 68 + EMOJI) == Analysis("UCS-2", 69, 70, 1, 70, 0)


def test_an_emoji_straddling_the_67_unit_boundary_moves_to_the_next_part():
    text = "a" * 66 + EMOJI + "a" * 10
    assert analyse(text) == Analysis("UCS-2", 77, 78, 2, 67, 55)


def test_a_moved_surrogate_pair_can_cost_an_extra_part():
    text = "a" * 66 + EMOJI + "a" * 66
    # 134 units would fill two parts exactly, but the unsplittable pair pushes one unit out.
    assert analyse(text) == Analysis("UCS-2", 133, 134, 3, 67, 66)


def test_gsm_extension_characters_cost_one_unit_in_ucs2():
    assert analyse("€" * 69 + "ç") == Analysis("UCS-2", 70, 70, 1, 70, 0)


def test_a_single_non_gsm_character_makes_the_whole_text_ucs2():
    text = "a" * 100 + "ç"
    assert analyse(text) == Analysis("UCS-2", 101, 101, 2, 67, 33)


def test_the_analysis_is_immutable():
    analysis = analyse("hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        analysis.parts = 5


# --- against a character-by-character reference ---------------------------------------------


def _reference(text):
    """Pack parts one character at a time, the obvious way."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        encoding, single, per_part = "GSM-7", 160, 153
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
    else:
        encoding, single, per_part = "UCS-2", 70, 67
        costs = [len(c.encode("utf-16-le")) // 2 for c in text]
    units = sum(costs)
    if units <= single:
        return Analysis(encoding, len(text), units, 1, single, single - units)
    fills = [0]
    for cost in costs:
        if fills[-1] + cost > per_part:
            fills.append(0)
        fills[-1] += cost
    return Analysis(encoding, len(text), units, len(fills), per_part, per_part - fills[-1])


_ASCII = string.ascii_letters + string.digits + " .,!?'-:;\n"
_EXTENSION = "\f^{}\\[~]|€"
_GSM_ACCENTS = "éèùìòÇØøÅåÆæßÉÄÖÑÜäöñüà"
_OTHER_ACCENTS = "çáíóúêâ`"
_ASTRAL = "\U0001f600\U0001f44d\U0001f389\U0001d11e"


def _random_text(rng):
    pools = [(_ASCII, 20), (_GSM_ACCENTS, 2)]
    if rng.random() < 0.5:
        pools.append((_OTHER_ACCENTS, 1))  # forces UCS-2
    if rng.random() < 0.6:
        pools.append((_EXTENSION, 3))
    if rng.random() < 0.4:
        pools.append((_ASTRAL, 3))  # forces UCS-2, with surrogate pairs
    chars, weights = zip(*pools)
    # Lengths cluster around the 70 / 134 / 160 / 306 boundaries.
    length = rng.choice([rng.randint(0, 400), rng.randint(60, 75), rng.randint(130, 170), rng.randint(295, 315)])
    return "".join(rng.choice(rng.choices(chars, weights)[0]) for _ in range(length))


def test_analyse_agrees_with_a_character_by_character_reference():
    rng = random.Random(20240523)
    seen = set()
    for _ in range(600):
        text = _random_text(rng)
        result = analyse(text)
        assert result == _reference(text), text
        assert is_gsm7(text) == (result.encoding == "GSM-7")
        seen.add((result.encoding, result.parts > 1, result.units > result.characters))
    # The sample must reach every branch: both encodings, one or more parts, with or without pairs.
    flags = (False, True)
    every_branch = {(e, m, p) for e in ("GSM-7", "UCS-2") for m in flags for p in flags}
    assert seen == every_branch
