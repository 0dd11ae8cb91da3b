"""Grouping of failures into signatures: message normalisation, in-app frames, fingerprints.

A fingerprint is stable across everything that varies between occurrences of one bug (ids,
e-mails, timestamps, line numbers, install paths, recursion depth) and differs when the exception
type or the application's call path differs.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

from immunity.models.schemas import Frame, full_frame

__all__ = [
    "Fingerprint",
    "fingerprint",
    "frames_fingerprint",
    "is_in_app",
    "module_from_filename",
    "normalize_message",
    "parse_python_traceback",
]

MAX_NORMALIZED_CHARS = 1_000
_HASH_CHARS = 32
# A repeating block of up to this many frames (mutual recursion) is collapsed to one copy.
_MAX_CYCLE = 4

# --- message normalisation -----------------------------------------------------------------------
# Applied in order: each pattern only sees what earlier ones left, so the composite shapes (e-mail,
# URL, IP, UUID, date, hash) go before the numbers inside them. Every digit is gone once <int> has
# run and every placeholder is bounded by `<`/`>`, which is what makes normalisation idempotent.

_H = "[0-9a-fA-F]"
# `<`/`>` count as word characters at the edges: a placeholder stands where digits were, so a
# letters-only hex run next to `<int>` was next to a digit in the first pass and must stay as is.
_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z>])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z<])"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_TIME = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s?[AaPp][Mm])?"
_ZONE = r"(?:\s?(?:Z|[+-]\d{2}:?\d{2}|UTC|GMT)\b)?"

_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z][A-Za-z0-9-]*"
)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>()\[\]{}]+")
_IPV6 = re.compile(
    rf"(?<![\w:.>])(?:(?:{_H}{{1,4}}:){{7}}{_H}{{1,4}}"
    rf"|(?=[0-9a-fA-F:]*{_H})(?:{_H}{{1,4}}(?::{_H}{{1,4}}){{0,6}})?::"
    rf"(?:{_H}{{1,4}}(?::{_H}{{1,4}}){{0,6}})?)"
    rf"(?:%\w+)?(?![\w:<])"
)
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?!\d)(?!\.\d)")
_UUID = re.compile(
    rf"{_NOT_ALNUM_BEFORE}{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}}{_NOT_ALNUM_AFTER}"
)
# Dates: month-name forms first so their time of day stays part of them, then the forms that
# start with a digit, then any weekday in front of either.
_DATES = (
    re.compile(rf"{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}(?:,?\s+{_TIME})?{_ZONE}"),
    re.compile(
        rf"(?<!\d)\d(?:\d{{3}}-\d{{2}}-\d{{2}}(?:[T ]{_TIME})?{_ZONE}"
        rf"|\d?\s+{_MONTH}\s+\d{{4}}(?:\s+{_TIME})?{_ZONE}"
        rf"|\d{{0,3}}/\d{{1,2}}/\d{{2,4}}(?!\w)(?:\s+{_TIME})?{_ZONE}"
        rf"|\d?\.\d{{1,2}}\.\d{{4}}(?!\w)(?:\s+{_TIME})?{_ZONE}"
        rf"|\d?:\d{{2}}:\d{{2}}(?:[.,]\d+)?{_ZONE})"
    ),
)
_WEEKDAY_DATE = re.compile(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s+)+<date>")
_HEX_RUN = re.compile(rf"{_NOT_ALNUM_BEFORE}{_H}{{8,}}+{_NOT_ALNUM_AFTER}")
_HEX_LITERAL = re.compile(rf"\b0[xX]{_H}+\b")
_FLOAT = re.compile(r"\d++(?:\.\d++(?:[eE][+-]?\d++)?|[eE][+-]?\d++)")
_INT = re.compile(r"\d+")  # also inside identifiers (`job-4821`, `user42`): ids vary
# A quote glued to a word is an apostrophe (`can't`, `users'`), not the start of a quote.
_QUOTED = re.compile(r"(?<!\w)(?:'[^']*'|\"[^\"]*\")(?!\w)")
_HASH_LENGTHS = (32, 40, 64)  # md5, sha1, sha256


def _ipv4(match: re.Match[str]) -> str:
    address = match.group().partition(":")[0]
    return "<ip>" if all(int(octet) < 256 for octet in address.split(".")) else match.group()


def _hex_run(match: re.Match[str]) -> str:
    run = match.group()
    if len(run) in _HASH_LENGTHS:
        return "<hash>"
    # Other runs count only when they mix digits and letters: `deadbeef`, `decade` stay words.
    if run.isdigit() or not any(c.isdigit() for c in run):
        return run
    return "<hex>"


# E-mails, URLs, IPs, UUIDs, hex runs and numbers never contain a space, so they are looked for
# token by token, and only in tokens holding the one character each shape needs: most words of
# a message are skipped by a C-speed `isalnum`/`isalpha`/`in` check instead of regex scans.


def _shapes(token: str) -> str:
    if token.isalnum():  # every shape below needs punctuation
        return token
    if "@" in token:
        token = _EMAIL.sub("<email>", token)
    if "://" in token:
        token = _URL.sub("<url>", token)
    if "::" in token or token.count(":") >= 7:
        token = _IPV6.sub("<ip>", token)
    if "." in token:
        token = _IPV4.sub(_ipv4, token)
    if "-" in token:
        token = _UUID.sub("<uuid>", token)
    return token


def _numbers(token: str) -> str:
    if token.isalpha():
        # Without digits only a whole token can be a hash (an all-letter run is no <hex>).
        if len(token) in _HASH_LENGTHS and _HEX_RUN.fullmatch(token):
            return "<hash>"
        return token
    if len(token) >= 8:
        token = _HEX_RUN.sub(_hex_run, token)
    if "0x" in token or "0X" in token:
        token = _HEX_LITERAL.sub("<hex>", token)
    if "." in token or "e" in token or "E" in token:
        token = _FLOAT.sub("<float>", token)
    return _INT.sub("<int>", token)


def normalize_message(message: str) -> str:
    """Return the message with variable parts replaced by placeholders (`<int>`, `<uuid>` …).

    Whitespace is collapsed first, so the result is stable and `normalize_message` is idempotent.
    """
    text = " ".join([_shapes(token) for token in message.split()])
    for pattern in _DATES:
        text = pattern.sub("<date>", text)
    if "<date>" in text:
        text = _WEEKDAY_DATE.sub("<date>", text)
    text = " ".join([_numbers(token) for token in text.split(" ")])
    # Replacing an inner quote can expose an outer one (`'a"b"c'`, `''x''`); each round removes
    # quote characters, so this ends.
    replaced = 1 if ("'" in text or '"' in text) else 0
    while replaced:
        text, replaced = _QUOTED.subn("<quoted>", text)
    return text


# --- frames --------------------------------------------------------------------------------------

# Python's own library: lib/python3.12/ (POSIX, venvs, pyenv), Python312/Lib/ (Windows), PyPy.
_STDLIB_ROOT = r"lib/python\d(?:\.\d+)?t?|lib-python|python\d+/lib"
_STDLIB_PATH = re.compile(rf"(?:^|/)(?:{_STDLIB_ROOT})/|^<frozen ", re.IGNORECASE)
# Greedy, so a stdlib root above site-packages (`lib/python3.12/site-packages/`) is passed over.
_INSTALL_ROOT = re.compile(
    rf"^(?:.*/)?(?:site-packages|dist-packages|{_STDLIB_ROOT})/", re.IGNORECASE
)
_STDLIB_MODULES = frozenset(sys.stdlib_module_names)


@lru_cache(maxsize=4096)  # a service has few files and every event repeats them
def module_from_filename(filename: str) -> str:
    """Return a dotted module name derived from a file path, free of the install location.

    Under site-packages/dist-packages/the stdlib the path below that root is used
    (`requests.sessions`); elsewhere only the file's own name (`handlers`), because the
    directories above it differ between machines, containers and releases.
    """
    path = filename.replace("\\", "/")
    if path.startswith("<frozen ") and path.endswith(">"):
        return path[len("<frozen ") : -1]
    if not path or path.startswith("<"):
        return path
    match = _INSTALL_ROOT.match(path)
    parts = [p for p in path[match.end() if match else 0 :].split("/") if p]
    if not match:
        parts = parts[-2:]
    if not parts:
        return ""
    stem = parts[-1]
    for suffix in (".py", ".pyc", ".pyw"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    parts[-1] = stem
    if match:
        return ".".join(p for p in parts if p != "__init__")
    # A package's __init__ or __main__ is named after its directory.
    if stem in ("__init__", "__main__") and len(parts) > 1:
        return parts[-2]
    return stem


def is_in_app(frame: Frame, include: Sequence[str] = ()) -> bool:
    """Return True when the frame is the application's own code rather than a library's.

    The frame's own `in_app` wins; then `include` module prefixes (package-aware: `app` covers
    `app.x`, not `application`); then stdlib, site-packages, dist-packages and `<frozen …>` are
    library code; anything else is the application's.
    """
    in_app = frame.get("in_app")
    if in_app is not None:
        return in_app
    filename = frame.get("filename", "")
    module = frame.get("module") or module_from_filename(filename)
    for prefix in include:
        prefix = prefix.rstrip(".")
        if prefix and (module == prefix or module.startswith(prefix + ".")):
            return True
    if filename:
        return not _is_library_path(filename)
    # Without a path only the module can say it is the standard library's; with neither, the
    # frame is given the benefit of the doubt like any other unrecognised code.
    return module.split(".", 1)[0] not in _STDLIB_MODULES


@lru_cache(maxsize=4096)
def _is_library_path(filename: str) -> bool:
    path = filename.replace("\\", "/")
    lowered = path.lower()
    if "site-packages/" in lowered or "dist-packages/" in lowered:
        return True
    return _STDLIB_PATH.search(path) is not None


# --- fingerprint ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """The signature key of a failure, the frame to blame and the normalised message."""

    hash: str
    culprit: str
    normalized_message: str


def _frame_key(frame: Frame) -> tuple[str, str]:
    module = frame.get("module", "").strip() or module_from_filename(frame.get("filename", ""))
    return module, frame.get("function", "").strip()


def _collapse(keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Recursion repeats a frame (or a short cycle of frames for mutual recursion) as many times as
    # it went deep; one copy keeps the call path without the depth.
    out: list[tuple[str, str]] = []
    for key in keys:
        out.append(key)
        for size in range(1, min(_MAX_CYCLE, len(out) // 2) + 1):
            # The cheap last-element test rules out almost every size before any slicing.
            if out[-1] == out[-1 - size] and out[-size:] == out[-2 * size : -size]:
                del out[-size:]
                break
    return out


def fingerprint(
    error_type: str,
    message: str,
    frames: Sequence[Frame],
    in_app_include: Sequence[str] = (),
) -> Fingerprint:
    """Return the fingerprint of a failure: a 32-char hash, its culprit and normalised message.

    The hash covers the error type and the (module, function) pairs of the in-app frames (all
    frames when none is in-app), never line numbers or paths; with no frames at all it covers
    the error type and the normalised message instead.
    """
    normalized = normalize_message(message)[:MAX_NORMALIZED_CHARS]
    grouped = frames_fingerprint(error_type, [full_frame(f) for f in frames], in_app_include)
    if grouped is not None:
        return Fingerprint(hash=grouped[0], culprit=grouped[1], normalized_message=normalized)
    return Fingerprint(
        hash=_digest(error_type.strip(), "\x00" + normalized),  # cannot collide with frames
        culprit="",
        normalized_message=normalized,
    )


def frames_fingerprint(
    error_type: str, frames: Sequence[dict[str, Any]], in_app_include: Sequence[str] = ()
) -> tuple[str, str] | None:
    """Return (hash, culprit) of a failure with frames (whole, as `full_frame` returns them),
    as `fingerprint` does; None without frames.

    The message plays no part when there are frames, so this is the whole of grouping for most
    events: what a frame's hash depends on (never its line) is looked up in a cache, because a
    service raises the same few call paths over and over.
    """
    if not frames:
        return None
    shape = tuple(map(_SHAPE, frames))
    return _shape_fingerprint(error_type, shape, tuple(in_app_include))


_FrameShape = tuple[tuple[str, str, str, bool | None], ...]
_SHAPE = itemgetter("module", "function", "filename", "in_app")  # all a frame's hash depends on


@lru_cache(maxsize=8192)
def _shape_fingerprint(
    error_type: str, shape: _FrameShape, in_app_include: tuple[str, ...]
) -> tuple[str, str]:
    frames = [
        Frame(module=module, function=function, filename=filename, in_app=in_app)
        for module, function, filename, in_app in shape
    ]
    in_app = [f for f in frames if is_in_app(f, in_app_include)]
    keys = _collapse([_frame_key(f) for f in (in_app or frames)])  # one or more: frames exist
    body = "\n".join(f"{module}\x1f{function}" for module, function in keys)
    return _digest(error_type.strip(), body), _culprit(keys[-1])


def _digest(error_type: str, body: str) -> str:
    digest = hashlib.sha256(f"{error_type}\n{body}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:_HASH_CHARS]


def _culprit(key: tuple[str, str]) -> str:
    module, function = key
    if module and function:
        return f"{module} in {function}"
    return module or function


# --- traceback text ------------------------------------------------------------------------------

_FRAME_LINE = re.compile(
    r'^[\s|+]*File "(?P<file>[^"]*)", line (?P<line>\d+)(?:, in (?P<func>.+))?$'
)
_NEW_TRACEBACK = re.compile(
    r"^[\s|+]*(?:Traceback \(most recent call last\):"
    r"|During handling of the above exception"
    r"|The above exception was the direct cause)"
)
_MARKER_LINE = re.compile(r"^[\s|]*[~^\s]*$")  # Python 3.11+ `~~~^^^` position markers
_INDENT = re.compile(r"[\s|+]*")  # exception groups draw their tracebacks inside `|` borders


def _indent(line: str) -> int:
    match = _INDENT.match(line)
    return match.end() if match else 0


def parse_python_traceback(text: str) -> list[Frame]:
    """Return the frames of a Python traceback text, outermost first; [] when it has none.

    For chained exceptions the frames of the last traceback printed (the exception that was
    finally raised) are returned.
    """
    segments: list[list[Frame]] = [[]]
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _NEW_TRACEBACK.match(line):
            if segments[-1]:
                segments.append([])
            continue
        match = _FRAME_LINE.match(line.rstrip())
        if not match:
            continue
        context = None
        following = lines[i + 1] if i + 1 < len(lines) else ""
        # The source line is indented deeper than its File line; the exception line is not.
        if _indent(following) > _indent(line) and not _MARKER_LINE.match(following):
            if not _FRAME_LINE.match(following):
                context = following[_indent(following) :].strip() or None
        filename = match["file"]
        segments[-1].append(
            Frame(
                filename=filename,
                module=module_from_filename(filename),
                function=(match["func"] or "").strip(),
                lineno=int(match["line"]),
                context_line=context,
            )
        )
    for segment in reversed(segments):
        if segment:
            return segment
    return []
