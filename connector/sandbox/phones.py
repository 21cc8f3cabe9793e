"""Phone number normalisation and prices per destination, with plain regexes so big feeds stay fast.

The `phonenumbers` library would be more precise but costs tens of microseconds per number, far
too much for a 100,000-recipient feed; the sandbox only needs AllMySMS's coarse rules.
"""

import re

FRANCE_PREFIX = "33"
SMS_CREDITS_FRANCE = 15
# Any country the table below does not name.
SMS_CREDITS_ABROAD = 20
VOICE_CREDITS = 30
# One MMS to any number; AllMySMS publishes no MMS price through its API.
MMS_CREDITS = 50
# One e-mail; no price is documented either.
EMAIL_CREDITS = 1

# Credits per SMS part by destination, as getCreditsByCountryIsoCode answers and sendSms debits them. France's
# 15 is AllMySMS's own figure; the others are the sandbox's: neighbouring Europe like any other country, North
# America cheaper, the French overseas departments dearer, so that a client can tell that prices differ.
SMS_CREDITS_BY_COUNTRY = {
    "FR": SMS_CREDITS_FRANCE,
    **dict.fromkeys(("US", "CA"), 10),
    **dict.fromkeys(("RE", "GP", "MQ", "GF", "YT"), 25),
}
# Dialling prefixes of the countries priced apart, longest first when they share digits (262 before 26).
_PRICED_PREFIXES = (("262", "RE"), ("590", "GP"), ("596", "MQ"), ("594", "GF"), ("1", "US"))

# One pass: a French national number (0 + 9 digits), or an international one with an optional
# "+" or "00" in front. The French case inside the international form is checked afterwards.
_NUMBER = re.compile(r"(?:0(?P<national>[1-9]\d{8})|(?:\+|00)?(?P<international>[1-9]\d{7,14}))", re.ASCII)
_FRENCH_INTERNATIONAL = re.compile(r"33[1-9]\d{8}", re.ASCII)
_ISO_CODE = re.compile(r"[A-Za-z]{2}")


def normalise_number(raw):
    """Return the number as AllMySMS writes it (international, no plus: "336…"), or None if invalid.

    Accepted: 0612345678, 33612345678, +33612345678, 0033612345678, and other international
    numbers of 8 to 15 digits. Only surrounding whitespace is forgiven, as the real API documents
    no other cleaning.
    """
    if not isinstance(raw, str):
        return None
    match = _NUMBER.fullmatch(raw.strip())
    if match is None:
        return None
    national = match.group("national")
    if national is not None:
        return FRANCE_PREFIX + national
    number = match.group("international")
    if number.startswith(FRANCE_PREFIX) and _FRENCH_INTERNATIONAL.fullmatch(number) is None:
        return None
    return number


def sms_credits_per_part(number):
    """Credits one SMS part costs to this normalised number."""
    if number.startswith(FRANCE_PREFIX):
        return SMS_CREDITS_FRANCE
    for prefix, country in _PRICED_PREFIXES:
        if number.startswith(prefix):
            return SMS_CREDITS_BY_COUNTRY[country]
    return SMS_CREDITS_ABROAD


def credits_for_country(iso_code):
    """Return (normalised ISO code, credits per SMS) or None when the code is not two letters."""
    if not isinstance(iso_code, str) or _ISO_CODE.fullmatch(iso_code.strip()) is None:
        return None
    code = iso_code.strip().upper()
    return code, SMS_CREDITS_BY_COUNTRY.get(code, SMS_CREDITS_ABROAD)
