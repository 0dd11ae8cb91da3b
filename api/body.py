"""Reading request bodies safely: size limits before and after decompression, clear errors.

Too large is a 413 and an unknown encoding a 415 (`ApiError`, HTTP-only); a body that cannot be
read is a `MalformedInputError`, which the API answers with 400.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import brotli
from fastapi import Request

from immunity.api.errors import ApiError
from immunity.models.errors import MalformedInputError

__all__ = ["decode_json", "read_body"]

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS}


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body is larger than the limit of {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """Return the body, decompressed (gzip/deflate), refusing anything over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding == "br":  # what sentry-sdk sends when the brotli package is installed
        return _unbrotli(raw, limit)
    if encoding not in _WBITS:
        raise ApiError(415, f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or br")
    return _decompress(raw, encoding, limit)


def _unbrotli(raw: bytes, limit: int) -> bytes:
    inflater = brotli.Decompressor()
    try:
        # The output limit stops a small bomb from inflating past the limit in memory.
        data = inflater.process(raw, output_buffer_limit=limit + 1)
    except brotli.error:
        raise MalformedInputError("body is not valid br data") from None
    if len(data) > limit or not inflater.can_accept_more_data():
        raise _too_large(limit)
    if not inflater.is_finished():
        raise MalformedInputError("body is not valid br data (truncated)")
    return data


def _decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    candidates = [_WBITS[encoding]]
    if encoding == "deflate":
        candidates.append(-zlib.MAX_WBITS)  # some clients send raw deflate without the header
    for wbits in candidates:
        inflater = zlib.decompressobj(wbits)
        try:
            # max_length stops a small bomb from inflating past the limit in memory.
            data = inflater.decompress(raw, limit + 1)
        except zlib.error:
            continue
        if len(data) > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
        if inflater.eof:
            return data
    raise MalformedInputError(f"body is not valid {encoding} data")


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; PostgreSQL's jsonb would refuse them later, mid-batch.
    raise MalformedInputError(f"malformed JSON: {name} is not a JSON value")


def decode_json(data: bytes) -> Any:
    """Return the parsed JSON of a body; MalformedInputError (a 400) says where it is not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedInputError(f"body is not valid UTF-8 (byte {error.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise MalformedInputError(
            f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
