"""Check digits that tell a real account or card number from a number that only looks like one.

Pure functions on strings. A detector whose format defines a checksum (``checksum = "luhn"`` or
``"iban"`` in ``policies/masking.toml``) runs it on each candidate, so order numbers, invoice
numbers and IBAN-shaped codes with wrong check digits pass through unmasked.
"""

from __future__ import annotations

from collections.abc import Callable

# ISO 13616 lengths of the IBAN registry (SWIFT, release 99): country code -> total length.
# A candidate of another length, or from a country not listed, is not an IBAN.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_issuer(digits: str) -> str | None:
    """The card network whose IIN range and length ``digits`` fits, else None."""
    length = len(digits)
    p2, p3, p4, p6 = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4" and length in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and length == 16:
        return "mastercard"
    if p2 in (34, 37) and length == 15:
        return "amex"
    if (p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925) and 16 <= length <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= length <= 19:
        return "jcb"
    if (300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39)) and 14 <= length <= 19:
        return "diners"
    if p2 == 62 and 16 <= length <= 19:
        return "unionpay"
    if p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763) and 12 <= length <= 19:
        return "maestro"
    if 2200 <= p4 <= 2204 and length == 16:
        return "mir"
    return None


def is_card_number(text: str) -> bool:
    """A 12-19 digit number (spaces, hyphens or form-encoded ``+`` allowed) with an issuer prefix
    that passes Luhn."""
    digits = text.replace(" ", "").replace("-", "").replace("+", "")
    return 12 <= len(digits) <= 19 and digits.isdigit() and card_issuer(digits) is not None \
        and luhn_valid(digits)


def iban_valid(text: str) -> bool:
    """An IBAN (spaces allowed) of its country's length whose ISO 7064 mod-97 remainder is 1."""
    iban = text.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit() \
            or not (iban.isascii() and iban.isalnum()):
        return False
    # Move the country code and check digits to the end; letters count as 10..35.
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


CHECKSUMS: dict[str, Callable[[str], bool]] = {
    "luhn": is_card_number,
    "iban": iban_valid,
}
