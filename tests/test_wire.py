"""The wire layer against jupyter_client's Session, byte for byte, and its error cases."""

from __future__ import annotations

import hashlib
import hmac
import json
import numbers
from datetime import datetime, timedelta, timezone

import pytest
from jupyter_client.session import Session as JCSession

from akernel.wire import (
    DELIMITER,
    InvalidSignature,
    MalformedMessage,
    Message,
    ReplayedMessage,
    Session,
    WireError,
)

KEY = b"a-secret-key-0123456789"
SCHEMES = ["hmac-sha256", "hmac-sha512", "hmac-md5"]
BUFFERS = [b"\x00\x01\x02binary", b"", b"x" * 10_000]


def theirs(key: bytes = KEY, scheme: str = "hmac-sha256") -> JCSession:
    return JCSession(key=key, signature_scheme=scheme, username="tester")


def their_frames(session: JCSession, msg_type: str = "execute_request", **kwargs) -> list:
    """Frames for a new message from jupyter_client, with one identity."""
    buffers = kwargs.pop("buffers", None)
    frames = session.serialize(session.msg(msg_type, **kwargs), ident=[b"client-id"])
    # jupyter_client's Session.send appends the buffers after the serialized frames.
    return frames + list(buffers or [])


def their_parse(session: JCSession, frames: list) -> tuple[list, dict]:
    idents, rest = session.feed_identities(frames, copy=True)
    return idents, session.deserialize(rest, content=True, copy=True)


def signed(session: Session, *parts) -> list[bytes]:
    """Frames with a valid signature over the given (possibly invalid) JSON frames.

    ``parts`` are header, parent_header, metadata, content; missing ones are ``{}``;
    bytes are used as is, anything else is JSON-encoded.
    """
    parts = (*parts, *[{}] * (4 - len(parts)))
    msg_frames = [p if isinstance(p, bytes) else json.dumps(p).encode() for p in parts]
    return [DELIMITER, session.sign(msg_frames), *msg_frames]


def good_header(**overrides) -> dict:
    header = {"msg_id": "m1", "msg_type": "execute_request", "session": "s1", "version": "5.3"}
    header.update(overrides)
    return header


# -- interoperability ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_ours_accepted_by_jupyter_client(scheme):
    ours = Session(KEY, scheme)
    content = {"code": "print('é')", "silent": False, "nested": {"a": [1, 2.5, None, True]}}
    metadata = {"cellId": "abc"}
    frames = ours.serialize(
        "execute_request",
        content,
        metadata=metadata,
        buffers=BUFFERS,
        identities=[b"id-1", b"id-2"],
    )
    idents, msg = their_parse(theirs(KEY, scheme), frames)
    assert idents == [b"id-1", b"id-2"]
    assert msg["msg_type"] == "execute_request"
    assert msg["header"]["session"] == ours.session_id
    assert msg["header"]["msg_id"]
    assert msg["content"] == content
    assert msg["metadata"] == metadata
    assert msg["parent_header"] == {}
    assert [bytes(b) for b in msg["buffers"]] == BUFFERS


@pytest.mark.parametrize("scheme", SCHEMES)
def test_jupyter_client_accepted_by_ours(scheme):
    jc = theirs(KEY, scheme)
    content = {"code": "1 + 1", "user_expressions": {"x": "x"}}
    frames = their_frames(jc, content=content, metadata={"m": 1}, buffers=BUFFERS)
    msg = Session(KEY, scheme).deserialize(frames)
    assert isinstance(msg, Message)
    assert msg.identities == [b"client-id"]
    assert msg.msg_type == "execute_request"
    assert msg.header["session"] == jc.session
    assert msg.content == content
    assert msg.metadata == {"m": 1}
    assert msg.parent_header == {}
    assert [bytes(b) for b in msg.buffers] == BUFFERS


def test_buffers_of_several_types_are_sent_as_is():
    ours = Session(KEY)
    buffers = [bytearray(b"abc"), memoryview(b"defg"), b"hi"]
    frames = ours.serialize("comm_msg", {"data": {}}, buffers=buffers)
    _, msg = their_parse(theirs(), frames)
    assert [bytes(b) for b in msg["buffers"]] == [b"abc", b"defg", b"hi"]


def test_jupyter_client_big_int_content_kept_exact():
    big = 2**70 + 1
    content = {"data": {"value": big, "neg": -big}}
    msg = Session(KEY).deserialize(their_frames(theirs(), "comm_msg", content=content))
    assert msg.content == content
    assert type(msg.content["data"]["value"]) is int


def test_reply_reuses_parent_header_frame():
    jc, ours = theirs(), Session(KEY)
    request_frames = their_frames(jc, content={"code": "x"})
    request = ours.deserialize(request_frames)
    reply = ours.serialize(
        "execute_reply", {"status": "ok"}, request, identities=request.identities
    )
    delim = reply.index(DELIMITER)
    # The parent_header frame is the request's header frame, byte for byte.
    assert reply[delim + 3] == request_frames[request_frames.index(DELIMITER) + 2]
    idents, msg = their_parse(jc, reply)
    assert idents == [b"client-id"]
    assert msg["parent_header"]["msg_id"] == request.msg_id
    assert msg["parent_header"]["msg_type"] == "execute_request"
    assert msg["content"] == {"status": "ok"}


def test_reply_to_message_without_raw_header():
    ours = Session(KEY)
    parent = Message(header=good_header())
    _, msg = their_parse(theirs(), ours.serialize("execute_reply", {}, parent))
    assert msg["parent_header"]["msg_id"] == "m1"
    assert msg["content"] == {}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signature_matches_jupyter_client(scheme):
    frames = [b'{"a": 1}', b"{}", b"{}", b'{"code": "1"}']
    digest = getattr(hashlib, scheme.split("-", 1)[1])
    expected = hmac.new(KEY, b"".join(frames), digest).hexdigest().encode()
    assert Session(KEY, scheme).sign(frames) == expected
    assert theirs(KEY, scheme).sign(frames) == expected


def test_header_fields():
    ours = Session(KEY, username="someone")
    header = ours.new_header("kernel_info_request")
    assert header["msg_type"] == "kernel_info_request"
    assert header["session"] == ours.session_id
    assert header["username"] == "someone"
    assert header["version"].startswith("5.")
    assert datetime.fromisoformat(header["date"].replace("Z", "+00:00")).tzinfo is not None
    assert header["msg_id"] != ours.new_header("kernel_info_request")["msg_id"]


# -- signing ------------------------------------------------------------------------------


def test_empty_key_means_unsigned_both_ways():
    ours, jc = Session(b""), theirs(key=b"")
    frames = ours.serialize("kernel_info_request", {}, identities=[b"i"])
    assert frames[frames.index(DELIMITER) + 1] == b""
    _, msg = their_parse(jc, frames)
    assert msg["msg_type"] == "kernel_info_request"
    msg2 = ours.deserialize(their_frames(jc, "kernel_info_request"))
    assert msg2.msg_type == "kernel_info_request"


def test_wrong_signature_rejected():
    frames = their_frames(theirs())
    i = frames.index(DELIMITER) + 1
    sig = frames[i]
    frames[i] = (b"0" if sig[:1] != b"0" else b"1") + sig[1:]
    with pytest.raises(InvalidSignature):
        Session(KEY).deserialize(frames)


def test_tampered_content_rejected():
    frames = their_frames(theirs(), content={"code": "1"})
    frames[-1] = b'{"code": "2"}'
    with pytest.raises(InvalidSignature):
        Session(KEY).deserialize(frames)


def test_other_key_or_digest_rejected():
    with pytest.raises(InvalidSignature):
        Session(b"another key").deserialize(their_frames(theirs()))
    with pytest.raises(InvalidSignature):
        Session(KEY, "hmac-sha512").deserialize(their_frames(theirs(KEY, "hmac-sha256")))


def test_missing_signature_rejected():
    frames = their_frames(theirs(key=b""))
    with pytest.raises(InvalidSignature):
        Session(KEY).deserialize(frames)


def test_replayed_message_rejected():
    ours = Session(KEY)
    frames = their_frames(theirs())
    ours.deserialize(list(frames))
    with pytest.raises(ReplayedMessage):
        ours.deserialize(list(frames))
    # A new message from the same client is still accepted.
    assert ours.deserialize(their_frames(theirs())).msg_type == "execute_request"


def test_rejected_signature_does_not_poison_history():
    ours = Session(KEY)
    frames = their_frames(theirs(), content={"code": "1"})
    tampered = [*frames[:-1], b'{"code": "2"}']
    with pytest.raises(InvalidSignature):
        ours.deserialize(tampered)
    assert ours.deserialize(frames).content == {"code": "1"}


def test_replay_history_is_bounded():
    ours = Session(KEY, replay_history=2)
    jc = theirs()
    first = their_frames(jc)
    ours.deserialize(first)
    for _ in range(3):
        ours.deserialize(their_frames(jc))
    # Forgotten after more than ``replay_history`` newer signatures.
    assert ours.deserialize(first).msg_type == "execute_request"


def test_errors_are_value_errors():
    for error in (InvalidSignature, MalformedMessage, ReplayedMessage):
        assert issubclass(error, WireError)
        assert issubclass(error, ValueError)


# -- malformed frames ------------------------------------------------------------------


def test_no_delimiter():
    frames = their_frames(theirs())
    frames.remove(DELIMITER)
    with pytest.raises(MalformedMessage):
        Session(KEY).deserialize(frames)


@pytest.mark.parametrize("kept", [0, 1, 2, 4])
def test_too_few_frames(kept):
    frames = their_frames(theirs())
    delim = frames.index(DELIMITER)
    with pytest.raises(MalformedMessage):
        Session(KEY).deserialize(frames[: delim + 1 + kept])


def test_empty_frame_list():
    with pytest.raises(MalformedMessage):
        Session(KEY).deserialize([])


@pytest.mark.parametrize("position", range(4))
@pytest.mark.parametrize("garbage", [b"{not json", b"\xff\xfe", b""])
def test_bad_json(position, garbage):
    ours = Session(KEY)
    parts = [good_header(), {}, {}, {}]
    parts[position] = garbage
    with pytest.raises(MalformedMessage):
        ours.deserialize(signed(ours, *parts))


@pytest.mark.parametrize("field", ["msg_id", "msg_type", "session"])
def test_header_missing_field(field):
    ours = Session(KEY)
    header = good_header()
    del header[field]
    with pytest.raises(MalformedMessage):
        ours.deserialize(signed(ours, header))


@pytest.mark.parametrize("field", ["msg_id", "msg_type", "session"])
def test_header_field_not_a_string(field):
    ours = Session(KEY)
    with pytest.raises(MalformedMessage):
        ours.deserialize(signed(ours, good_header(**{field: 5})))


@pytest.mark.parametrize("value", [[], "text", 3, None])
def test_header_not_an_object(value):
    ours = Session(KEY)
    with pytest.raises(MalformedMessage):
        ours.deserialize(signed(ours, value))


@pytest.mark.parametrize("position", [1, 2, 3])
@pytest.mark.parametrize("value", [[], "text", 3, None])
def test_non_object_parent_metadata_content(position, value):
    ours = Session(KEY)
    parts = [good_header(), {}, {}, {}]
    parts[position] = value
    with pytest.raises(MalformedMessage):
        ours.deserialize(signed(ours, *parts))


def test_malformed_on_unsigned_session():
    ours = Session(b"")
    with pytest.raises(MalformedMessage):
        ours.deserialize([DELIMITER, b"", b"{", b"{}", b"{}", b"{}"])
    with pytest.raises(MalformedMessage):
        ours.deserialize([DELIMITER, b"", b"{}", b"{}", b"{}", b"[]"])


def test_well_formed_minimal_message_accepted():
    ours = Session(KEY)
    msg = ours.deserialize([b"a", b"b", *signed(ours, good_header()), b"buf"])
    assert msg.identities == [b"a", b"b"]
    assert msg.msg_id == "m1"
    assert msg.content == {} and msg.metadata == {} and msg.parent_header == {}
    assert [bytes(b) for b in msg.buffers] == [b"buf"]


# -- scheme and packing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme", ["hmac-nosuchdigest", "rsa-sha256", "hmac", "hmac-", "", "sha256"]
)
def test_unknown_signature_scheme(scheme):
    with pytest.raises(ValueError):
        Session(KEY, scheme)


class FakeNumpyInt:
    """An integer type that is not ``int``, like ``numpy.int64``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value


numbers.Integral.register(FakeNumpyInt)


def pack_content(content: dict) -> dict:
    """Serialize with our Session, parse with jupyter_client's: the content."""
    _, msg = their_parse(theirs(), Session(KEY).serialize("display_data", content))
    return msg["content"]


def as_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_pack_non_json_native_values():
    aware = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone(timedelta(hours=2)))
    content = pack_content(
        {
            "aware": aware,
            "bytes": b"\x00\xffdata",
            "integral": FakeNumpyInt(42),
            "big": 2**70,
            "neg_big": -(2**80),
            "tuple": (1, 2),
        }
    )
    assert as_datetime(content["aware"]) == aware
    assert content["bytes"] == "AP9kYXRh"  # base64
    assert content["integral"] == 42
    assert content["big"] == 2**70
    assert content["neg_big"] == -(2**80)
    assert content["tuple"] == [1, 2]


@pytest.mark.parametrize("with_big_int", [False, True])
def test_pack_naive_datetime(with_big_int):
    naive = datetime(2024, 5, 6, 7, 8, 9)
    data = {"when": naive}
    if with_big_int:
        data["big"] = 2**70
    assert as_datetime(pack_content(data)["when"]).replace(tzinfo=None) == naive


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 5, 6, 7, 8, 9),
        datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
        datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=-3))),
    ],
    ids=["naive", "utc", "offset"],
)
def test_datetime_meaning_independent_of_other_values(value):
    """A datetime denotes the same instant whichever JSON encoder packs the message."""
    alone = as_datetime(pack_content({"when": value})["when"])
    beside_big_int = as_datetime(pack_content({"when": value, "big": 2**70})["when"])
    assert alone == beside_big_int
    assert (alone.tzinfo is None) == (beside_big_int.tzinfo is None)


def test_pack_unserializable_raises_type_error():
    with pytest.raises(TypeError):
        Session(KEY).serialize("display_data", {"x": object()})


# -- what must never break the codec ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ok\udcff", "ok\ufffd"),  # a byte decoded with surrogateescape
        ("\ud800 lone high", "\ufffd lone high"),
        ("pair \ud83d\ude00", "pair \U0001f600"),  # a pair written as two code units
        ("plain é 😀", "plain é 😀"),
    ],
)
def test_lone_surrogates_are_replaced(text, expected):
    """Strings that cannot be UTF-8 (surrogateescape output) still go out, as
    jupyter_client reads them: U+FFFD where a lone surrogate stood."""
    for content in ({"text": text}, {"text": text, "big": 2**70}, {text: 1}):
        received = pack_content(content)
        assert expected in json.dumps(received, ensure_ascii=False)


@pytest.mark.parametrize(
    ("frame", "check"),
    [
        (b'{"x": NaN}', lambda x: x != x),
        (b'{"x": Infinity}', lambda x: x == float("inf")),
        (b'{"x": -Infinity}', lambda x: x == float("-inf")),
        (b'{"x": 1e400}', lambda x: x == float("inf")),
        (b'{"x": "caf\xe9"}', lambda x: x == "caf\ufffd"),  # not UTF-8
    ],
)
def test_json_the_reference_accepts_is_accepted(frame, check):
    """What jupyter_client's decoder accepts, ours accepts too."""
    ours = Session(KEY)
    msg = ours.deserialize(signed(ours, good_header(), {}, {}, frame))
    reference = json.loads(frame.decode("utf-8", "replace"))["x"]
    assert check(msg.content["x"]) and check(reference)


@pytest.mark.parametrize("with_long_number", [False, True])
@pytest.mark.parametrize("depth", [1_100, 5_000, 100_000])
def test_deeply_nested_json_is_malformed(depth, with_long_number):
    """Nesting beyond either decoder's limit is a dropped message, never a
    RecursionError (a long number sends the frame to the stdlib decoder)."""
    inner = b"1234567890123456789012" if with_long_number else b"1"
    frame = b'{"x": ' + b"[" * depth + inner + b"]" * depth + b"}"
    ours = Session(KEY)
    with pytest.raises(MalformedMessage):
        ours.deserialize(signed(ours, good_header(), {}, {}, frame))


def test_deeply_nested_content_is_a_value_error_to_send():
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(ValueError):
        Session(KEY).serialize("display_data", {"x": nested})


@pytest.mark.parametrize("depth", [32, 1_000])
def test_deeply_nested_header_is_malformed(depth):
    """Replies echo the header as their parent: one nested too deeply for
    clients to read back is refused (jupyter_client fails near 500 levels)."""
    header = json.dumps(good_header()).encode()[:-1]
    header += b', "extra": ' + b"[" * depth + b"]" * depth + b"}"
    ours = Session(KEY)
    with pytest.raises(MalformedMessage):
        ours.deserialize(signed(ours, header))


def test_header_with_shallow_structure_is_accepted():
    ours = Session(KEY)
    msg = ours.deserialize(signed(ours, good_header(extra={"a": [1, {"b": [2]}]})))
    assert msg.header["extra"] == {"a": [1, {"b": [2]}]}


def test_deep_nesting_is_judged_the_same_in_every_thread() -> None:
    """Frames the stdlib decodes (here: a 20-digit integer) are accepted up to a fixed
    depth, whatever stack the decoding thread has left (it once depended on it)."""
    import threading

    from akernel.wire import jsonutil

    def frame(depth: int) -> bytes:
        return ('{"n": 12345678901234567890, "v": ' + "[" * depth + "]" * depth + "}").encode()

    def judge(depth: int) -> bool:
        try:
            jsonutil.loads(frame(depth))
        except ValueError:
            return False
        return True

    def judge_deep_in_the_stack(depth: int, frames_left: int) -> bool:
        return judge_deep_in_the_stack(depth, frames_left - 1) if frames_left else judge(depth)

    depths = [jsonutil.MAX_NESTING - 1, jsonutil.MAX_NESTING + 2, 990]
    expected = [True, False, False]
    assert [judge(d) for d in depths] == expected
    assert [judge_deep_in_the_stack(d, 50) for d in depths] == expected
    in_thread: list[bool] = []
    worker = threading.Thread(target=lambda: in_thread.extend(judge(d) for d in depths))
    worker.start()
    worker.join()
    assert in_thread == expected
