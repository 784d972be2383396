"""Real kernels receiving forged, replayed and malformed messages on shell and control."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest
from jupyter_client.session import DELIM

from .rawclient import (
    build_frames,
    replies_until,
    request,
    send_raw,
    signed_frames,
)
from .utils import iopub_until_idle


def execute_content(code: str) -> dict:
    return {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }


def marker_code(path) -> str:
    return f"open({str(path)!r}, 'w').write('executed')"


def other_key_signature(frames: list[bytes]) -> bytes:
    h = hmac.new(b"not-the-kernel-key", digestmod=hashlib.sha256)
    for frame in frames[2:6]:
        h.update(frame)
    return h.hexdigest().encode()


def forge(kc, how: str, code: str) -> tuple[str, list[bytes]]:
    """An execute_request for ``code`` that the kernel must refuse, made ``how``."""
    if how == "tampered":
        # Signed for harmless code, then the content is swapped.
        msg_id, frames = build_frames(kc, "execute_request", execute_content("pass"))
        frames[5] = kc.session.pack(execute_content(code))
        return msg_id, frames
    msg_id, frames = build_frames(kc, "execute_request", execute_content(code))
    sig = frames[1]
    if how == "wrong":
        frames[1] = (b"0" if sig[:1] != b"0" else b"1") + sig[1:]
    elif how == "missing":
        frames[1] = b""
    elif how == "other_key":
        frames[1] = other_key_signature(frames)
    elif how == "truncated":
        frames[1] = sig[:-2]
    return msg_id, frames


def check_only_answered(kc, good_id: str, bad_id: str) -> dict:
    """Every shell reply and IOPub message up to ``good_id`` belongs to it, not ``bad_id``."""
    replies = replies_until(kc, "shell", good_id)
    assert [r["parent_header"].get("msg_id") for r in replies] == [good_id]
    iopub = iopub_until_idle(kc, good_id)
    assert bad_id not in {m["parent_header"].get("msg_id") for m in iopub}
    return replies[-1]


@pytest.mark.parametrize("how", ["wrong", "missing", "other_key", "truncated", "tampered"])
def test_badly_signed_execute_is_dropped(kernel, kc, tmp_path, how):
    km = kernel[0]
    marker = tmp_path / "marker"
    bad_id, frames = forge(kc, how, marker_code(marker))
    send_raw(kc, "shell", frames)
    good_id = kc.execute("40 + 2")
    reply = check_only_answered(kc, good_id, bad_id)
    assert reply["content"]["status"] == "ok"
    assert not marker.exists()
    assert km.is_alive()


def test_correctly_signed_raw_frames_are_executed(kernel, kc, tmp_path):
    """The control case for the forgeries: the same raw path, signed right, runs."""
    marker = tmp_path / "marker"
    msg_id, frames = build_frames(kc, "execute_request", execute_content(marker_code(marker)))
    send_raw(kc, "shell", frames)
    replies = replies_until(kc, "shell", msg_id)
    assert replies[-1]["content"]["status"] == "ok"
    assert marker.read_text() == "executed"


def test_replayed_execute_runs_once(kernel, kc):
    name = f"_replay_count_{uuid.uuid4().hex}"
    code = f"{name} = globals().get({name!r}, 0) + 1"
    replay_id, frames = build_frames(kc, "execute_request", execute_content(code))
    send_raw(kc, "shell", list(frames))
    send_raw(kc, "shell", list(frames))
    good_id = kc.execute("pass", user_expressions={"n": name})
    replies = replies_until(kc, "shell", good_id)
    parents = [r["parent_header"].get("msg_id") for r in replies]
    assert parents == [replay_id, good_id]
    assert replies[0]["content"]["status"] == "ok"
    assert replies[-1]["content"]["user_expressions"]["n"]["data"]["text/plain"] == "1"
    assert kernel[0].is_alive()


def test_replayed_control_request_answered_once(kernel, kc):
    replay_id, frames = build_frames(kc, "kernel_info_request")
    send_raw(kc, "control", list(frames))
    send_raw(kc, "control", list(frames))
    good_id = request(kc, "control", "kernel_info_request")
    replies = replies_until(kc, "control", good_id)
    assert [r["parent_header"].get("msg_id") for r in replies] == [replay_id, good_id]


def _header(kc, **overrides) -> dict:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "kernel_info_request",
        "session": kc.session.session,
        "username": "tester",
        "date": "2024-01-01T00:00:00Z",
        "version": "5.3",
    }
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not _DROP}


_DROP = object()


def _malformed(kc, case: str) -> list[bytes]:
    _, good = build_frames(kc, "kernel_info_request")
    if case == "no_delimiter":
        return good[1:]
    if case == "too_few_frames":
        return good[:4]
    if case == "only_delimiter":
        return [DELIM]
    if case == "empty_frame":
        return [b""]
    if case == "garbage_json":
        return signed_frames(kc, b"{this is not json")
    if case == "non_utf8":
        return signed_frames(kc, b"\xff\xfe\xfd", b"\x80")
    if case == "non_dict_header":
        return signed_frames(kc, [1, 2, 3])
    if case == "non_dict_content":
        return signed_frames(kc, _header(kc), {}, {}, ["not", "a", "dict"])
    if case == "non_dict_metadata":
        return signed_frames(kc, _header(kc), {}, "text")
    if case == "null_parent":
        return signed_frames(kc, _header(kc), None)
    if case.startswith("missing_"):
        return signed_frames(kc, _header(kc, **{case[len("missing_") :]: _DROP}))
    if case == "msg_type_not_string":
        return signed_frames(kc, _header(kc, msg_type=["kernel_info_request"]))
    if case.startswith("deeply_nested"):
        # Past orjson's depth limit; a 19+ digit number sends the frame to
        # the stdlib decoder, whose recursion limit it also exceeds.
        number = b"12345678901234567890" if case.endswith("long_number") else b"1"
        content = b'{"x": ' + b"[" * 5000 + number + b"]" * 5000 + b"}"
        return signed_frames(kc, _header(kc), {}, {}, content)
    raise AssertionError(case)


MALFORMED = [
    "no_delimiter",
    "too_few_frames",
    "only_delimiter",
    "empty_frame",
    "garbage_json",
    "non_utf8",
    "non_dict_header",
    "non_dict_content",
    "non_dict_metadata",
    "null_parent",
    "missing_msg_id",
    "missing_msg_type",
    "missing_session",
    "msg_type_not_string",
    "deeply_nested",
    "deeply_nested_long_number",
]


@pytest.mark.parametrize("channel", ["shell", "control"])
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_frames_do_not_crash(kernel, kc, channel, case):
    km = kernel[0]
    send_raw(kc, channel, _malformed(kc, case))
    good_id = request(kc, channel, "kernel_info_request")
    replies = replies_until(kc, channel, good_id)
    assert [r["parent_header"].get("msg_id") for r in replies] == [good_id]
    assert replies[-1]["content"]["status"] == "ok"
    assert km.is_alive()


def test_malformed_burst_then_execute(kernel, kc):
    """Many bad messages on both channels in a row; the shell still executes."""
    for case in MALFORMED:
        send_raw(kc, "shell", _malformed(kc, case))
        send_raw(kc, "control", _malformed(kc, case))
    good_id = kc.execute("print('still here')")
    replies = replies_until(kc, "shell", good_id)
    assert [r["parent_header"].get("msg_id") for r in replies] == [good_id]
    assert replies[-1]["content"]["status"] == "ok"
    control_id = request(kc, "control", "kernel_info_request")
    assert replies_until(kc, "control", control_id)[-1]["content"]["status"] == "ok"
    assert kernel[0].is_alive()


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_unknown_msg_type_ignored(kernel, kc, channel):
    bogus_id = request(kc, channel, "no_such_request", {"x": 1})
    good_id = request(kc, channel, "kernel_info_request")
    replies = replies_until(kc, channel, good_id)
    assert replies[-1]["content"]["status"] == "ok"
    assert all(r["parent_header"].get("msg_id") in (bogus_id, good_id) for r in replies)
    iopub = iopub_until_idle(kc, good_id)
    assert {m["msg_type"] for m in iopub if m["parent_header"].get("msg_id") == bogus_id} <= {
        "status"
    }
    if channel == "shell":
        reply = check_only_answered(kc, kc.execute("1"), bogus_id)
        assert reply["content"]["status"] == "ok"
    assert kernel[0].is_alive()
