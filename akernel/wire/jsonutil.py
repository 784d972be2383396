"""JSON packing for message frames: orjson, with a stdlib fallback.

orjson is several times faster than ``json`` for the small dicts of the
message hot path. The fallback covers what orjson refuses (integers beyond
64 bits); both accept the same extra types through :func:`_default`.
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
        # orjson refuses some values json accepts (big integers, odd keys).
        return json.dumps(obj, default=_default, ensure_ascii=False).encode("utf-8")


def loads(data: bytes) -> Any:
    """Decode JSON from bytes, keeping big integers exact."""
    if _LONG_NUMBER.search(data) is None:
        return orjson.loads(data)
    return json.loads(data)
