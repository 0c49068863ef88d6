"""De-identified views (pure): scrub direct identifiers out of free text.

Replaces, with a bracketed tag, e-mail addresses; phone numbers (Korean mobile 010/011/016-019 with
or without separators or the +82 prefix, Korean landlines 02 and 0xx area codes, and other
international numbers starting with +); Korean resident registration numbers (YYMMDD-NNNNNNN); and
payment card numbers (13 to 19 digits, optionally grouped, passing the Luhn check). Identifier
fields are dropped by the policy (``Category.identifiers``) before text reaches this module.

Scrubbing is defence in depth for free text, not a guarantee of anonymity: names and rare facts
in prose are not detected. Purposes that feed analytics or LLMs should also limit fields.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
RRN = re.compile(r"(?<!\d)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[-\s]?[1-8]\d{6}(?!\d)")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_SEP = r"[-.\s]?"
PHONE = re.compile(
    r"(?<![\d+])(?:"
    rf"(?:\+82{_SEP}|0)1[016789]{_SEP}\d{{3,4}}{_SEP}\d{{4}}"  # Korean mobile
    rf"|(?:\+82{_SEP}|0)(?:2|[3-6][1-5]|70){_SEP}\d{{3,4}}{_SEP}\d{{4}}"  # Korean landline/VoIP
    rf"|\+(?!82)\d{{1,3}}(?:{_SEP}\(?\d{{1,4}}\)?){{2,4}}"  # other international
    r")(?!\d)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def scrub_text(text: str) -> str:
    """``text`` with every detected identifier replaced by [EMAIL], [RRN], [CARD] or [PHONE]."""
    text = EMAIL.sub("[EMAIL]", text)
    text = RRN.sub("[RRN]", text)
    text = CARD.sub(_card, text)
    return PHONE.sub("[PHONE]", text)
