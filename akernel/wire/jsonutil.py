"""JSON packing for message frames: orjson, with a stdlib fallback.

orjson is several times faster than ``json`` for the small dicts of the
message hot path. The fallback covers what orjson refuses: integers beyond
64 bits, strings with lone surrogates (sent as U+FFFD), and on receipt what
jupyter_client's decoder accepts (``NaN``, ``Infinity``, ``1e400``, invalid
UTF-8). Both encoders accept the same extra types through :func:`_default`.
Neither ever raises anything but ``TypeError`` or ``ValueError``: nesting
too deep for the stdlib's recursion is a ``ValueError`` too.
"""

from __future__ import annotations

import base64
import json
import numbers
import re
from datetime import date, datetime, timezone
from typing import Any

import orjson

# Naive datetimes are taken as UTC, the same whichever encoder runs.
_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
)
# orjson reads integers beyond 64 bits as floats; such frames go to ``json``.
_LONG_NUMBER = re.compile(rb"\d{19}")


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=timezone.utc)
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as UTF-8 JSON bytes."""
    try:
        return orjson.dumps(obj, default=_default, option=_OPTIONS)
    except TypeError:
        # orjson refuses some values json accepts (big integers, odd keys,
        # lone surrogates, nesting deeper than 255).
        pass
    try:
        text = json.dumps(obj, default=_default, ensure_ascii=False)
    except RecursionError:
        raise ValueError("object nested too deeply to encode as JSON") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return without_lone_surrogates(text).encode("utf-8")


def without_lone_surrogates(text: str) -> str:
    """``text`` with surrogate pairs joined and lone surrogates as U+FFFD.

    Such strings come from bytes decoded with ``surrogateescape`` (file
    names, ``sys.argv``, the environment, subprocess output) and cannot be
    encoded as UTF-8.
    """
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def loads(data: bytes) -> Any:
    """Decode JSON from bytes, keeping big integers exact.

    Raises ``ValueError`` for anything that is not JSON.
    """
    if _LONG_NUMBER.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # maybe what the stdlib accepts (NaN, 1e400, invalid UTF-8)
    try:
        value = json.loads(data.decode("utf-8", "replace"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # The stdlib's limit is the caller's remaining stack, which differs from
    # thread to thread: a fixed one makes acceptance the same everywhere.
    if _nested_deeper_than(value, MAX_NESTING):
        raise ValueError(f"JSON nested more than {MAX_NESTING} levels deep")
    return value


MAX_NESTING = 600
"""Deepest nesting of lists and objects the stdlib fallback accepts on receipt
(orjson, which reads most frames, stops at 1,024 levels on its own). Below the
recursion limit (1,000) by more than any caller's stack, so that what is accepted
does not depend on the thread; above what jupyter_client's json packer sends."""


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
