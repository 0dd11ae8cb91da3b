"""Personal data recognised by its shape in text: Luhn-valid card numbers and e-mail addresses."""

from __future__ import annotations

import re

from immunity.tasks.shared.secrets import FILTERED

__all__ = ["URL_CARD_CANDIDATE", "cards_and_emails", "is_card"]


# RFC 5322 atext in the local part (as Sentry's scrubber does), bounded so that a long run of word
# characters costs linear time; the last label must hold a letter so `lodash@4.17.21` survives.
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z0-9-]{0,62}[A-Za-z][A-Za-z0-9-]{0,62}"
)
# A run of at least 13 digits, possibly broken by single spaces or dashes; which part of it is a
# card is decided afterwards by length and the Luhn check. A run is only tried from its start:
# from inside it the match could only be shorter, and retrying every digit of a digit-rich text
# (ids, UUIDs) costs quadratic time.
# (The look-behinds follow the first digit so the engine can still skip ahead to a digit.)
_DIGIT_RUN = re.compile(r"\d(?<!\d\d)(?<!\d[ -]\d)(?:[ -]?\d){12,}", re.ASCII)
_GROUP = re.compile(r"\d+", re.ASCII)
# What every such run starts with: 13 digits, spaces or dashes from a digit on. Far cheaper to
# look for (no look-behinds, a fixed length), and most digit-rich texts (UUIDs, dotted
# addresses, timestamps) have none, so the full search above is spared them. In a URL a `+` is
# an encoded space.
_CARD_CANDIDATE = re.compile(r"\d[\d -]{12}", re.ASCII)
URL_CARD_CANDIDATE = re.compile(r"\d[\d +-]{12}", re.ASCII)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card(digits: str) -> bool:
    """Return True for 13 to 19 digits that pass the Luhn check."""
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


def _scrub_digit_run(match: re.Match[str]) -> str:
    run = match.group()
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    if len(groups) == 1:
        return FILTERED if is_card(run) else run
    if is_card(run.replace(" ", "").replace("-", "")):
        return FILTERED
    # A card can sit inside a longer separated run ("ref 12 4111 1111 1111 1111"): look for a
    # span of whole groups that is one. Groups of 1-2 digits only end a card (4+4+4+1 digits),
    # so space-separated small numbers ("10 20 30 ...") are not taken for one.
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(groups):
        found = -1
        digits = 0
        for j in range(i, len(groups)):
            start, end = groups[j]
            short = end - start < 3
            if short and j == i:
                break
            digits += end - start
            if digits > 19:
                break
            if digits >= 13 and _luhn_ok(run[groups[i][0] : end].replace(" ", "").replace("-", "")):
                found = j
            if short:
                break
        if found < 0:
            i += 1
            continue
        out.append(run[pos : groups[i][0]])
        out.append(FILTERED)
        pos = groups[found][1]
        i = found + 1
    out.append(run[pos:])
    return "".join(out)


def cards_and_emails(text: str) -> str:
    """Return the text with Luhn-valid card numbers and e-mail addresses replaced by FILTERED."""
    # The cheap containment checks skip both regexes for the common short, clean string.
    if "@" in text:
        text = _EMAIL.sub(FILTERED, text)
    if len(text) >= 13 and _CARD_CANDIDATE.search(text):
        text = _DIGIT_RUN.sub(_scrub_digit_run, text)
    return text
