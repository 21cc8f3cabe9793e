"""SMS length arithmetic: which encoding a text needs and how many parts it will be sent in."""

from __future__ import annotations

import re
from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# GSM 03.38 (3GPP TS 23.038) default alphabet, in code order 0x00-0x7F, eight rows of sixteen.
# Position 0x1B is not a character but the escape into the extension table; it is held here by
# U+001B so that the positions line up, and it is left out of the characters a text may use.
ESCAPE = "\x1b"
GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Characters reached through the escape: each costs two septets (escape + code).
GSM7_EXTENSION_TABLE = "\f^{}\\[~]|€"

GSM7_BASIC = frozenset(GSM7_BASIC_TABLE) - {ESCAPE}
GSM7_EXTENSION = frozenset(GSM7_EXTENSION_TABLE)

GSM7_SINGLE_PART = 160
GSM7_PER_PART = 153  # 7 septets of each part go to the concatenation header
UCS2_SINGLE_PART = 70
UCS2_PER_PART = 67  # 3 UTF-16 units of each part go to the concatenation header


def _char_class(chars: frozenset[str], negate: bool = False) -> re.Pattern[str]:
    # \uXXXX escapes keep control characters and ] \ ^ - from meaning anything to the regex engine.
    body = "".join(f"\\u{ord(c):04x}" for c in sorted(chars))
    return re.compile(f"[{'^' if negate else ''}{body}]")


_NOT_GSM7 = _char_class(GSM7_BASIC | GSM7_EXTENSION, negate=True)
_NOT_GSM7_BASIC = _char_class(GSM7_BASIC, negate=True)
_GSM7_DOUBLE = _char_class(GSM7_EXTENSION)
# Code points outside the Basic Multilingual Plane take a surrogate pair in UTF-16.
_UCS2_DOUBLE = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Analysis:
    """How a text will travel as SMS.

    ``units`` are septets for GSM-7 (an extension character counts 2) and UTF-16 code units for
    UCS-2 (a character outside the BMP, such as most emoji, counts 2). ``unit_limit`` is the
    single-part limit (160 / 70) when the text fits in one part, otherwise the per-part limit of a
    concatenated message (153 / 67). ``remaining`` is how many units are still free in the last
    part; when it is 1, a two-unit character would still start a new part, since pairs are never
    split. "UCS-2" is the name the SMS world uses; what phones actually decode is UTF-16.
    The empty text is one part of 0 units: an SMS with an empty body is still one message.
    """

    encoding: str
    characters: int
    units: int
    parts: int
    unit_limit: int
    remaining: int


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM-7 default alphabet or its extension."""
    return _NOT_GSM7.search(text) is None


def analyse(text: str) -> Analysis:
    """Encoding, length in units and number of parts of ``text`` sent as one SMS message."""
    characters = len(text)
    # The common case costs one regex scan: only basic-table characters, one septet each.
    first_other = _NOT_GSM7_BASIC.search(text)
    if first_other is None:
        return _without_doubles(GSM7, characters, GSM7_SINGLE_PART, GSM7_PER_PART)

    # Everything before first_other is a basic-table character, so later scans can start there.
    start = first_other.start()
    if _NOT_GSM7.search(text, start) is None:
        encoding, single, per_part, doubles = GSM7, GSM7_SINGLE_PART, GSM7_PER_PART, _GSM7_DOUBLE
    else:
        encoding, single, per_part, doubles = UCS2, UCS2_SINGLE_PART, UCS2_PER_PART, _UCS2_DOUBLE

    positions = [match.start() for match in doubles.finditer(text, start)]
    if not positions:
        return _without_doubles(encoding, characters, single, per_part)
    units = characters + len(positions)
    if units <= single:
        return Analysis(encoding, characters, units, 1, single, single - units)
    parts, fill = _pack(characters, positions, per_part)
    return Analysis(encoding, characters, units, parts, per_part, per_part - fill)


def _without_doubles(encoding: str, characters: int, single: int, per_part: int) -> Analysis:
    # Every character is one unit, so parts are plain division.
    if characters <= single:
        return Analysis(encoding, characters, characters, 1, single, single - characters)
    parts = -(-characters // per_part)
    remaining = parts * per_part - characters
    return Analysis(encoding, characters, characters, parts, per_part, remaining)


def _pack(characters: int, double_positions: list[int], capacity: int) -> tuple[int, int]:
    """Parts used and fill of the last part when packing greedily, two-unit characters kept whole.

    Only the two-unit characters are visited; the runs of one-unit characters between them are
    added in one step each.
    """
    parts, fill, previous = 1, 0, 0
    for position in double_positions:
        parts, fill = _add_singles(parts, fill, position - previous, capacity)
        if fill + 2 > capacity:
            parts, fill = parts + 1, 2
        else:
            fill += 2
        previous = position + 1
    return _add_singles(parts, fill, characters - previous, capacity)


def _add_singles(parts: int, fill: int, count: int, capacity: int) -> tuple[int, int]:
    fill += count
    if fill > capacity:
        overflow = (fill - 1) // capacity
        parts += overflow
        fill -= overflow * capacity
    return parts, fill
