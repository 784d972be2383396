"""A cell whose result cannot be shown (its ``__repr__`` raises) failed: the
reply says ``error``, so that nbclient and papermill stop there."""

from __future__ import annotations

from .utils import execute, msg_types

BROKEN_REPR = """
class Broken:
    def __repr__(self):
        raise ValueError("no repr for you")
"""


def test_result_whose_repr_raises_is_an_error(kc) -> None:
    reply, outputs = execute(kc, BROKEN_REPR + "Broken()")
    content = reply["content"]
    assert content["status"] == "error", content
    assert content["ename"] == "ValueError"
    assert content["evalue"] == "no repr for you"
    assert any("no repr for you" in line for line in content["traceback"])
    assert "error" in msg_types(outputs)
    assert "execute_result" not in msg_types(outputs)


def test_the_failed_result_aborts_what_is_queued(kc) -> None:
    failing = kc.execute(BROKEN_REPR + "Broken()")
    queued = kc.execute("print('after')")
    replies = {}
    while len(replies) < 2:
        reply = kc.get_shell_msg(timeout=20)
        replies[reply["parent_header"]["msg_id"]] = reply["content"]["status"]
    assert replies == {failing: "error", queued: "aborted"}


def test_a_good_result_is_still_ok(kc) -> None:
    reply, outputs = execute(
        kc, "class Fine:\n    def __repr__(self):\n        return 'fine'\nFine()"
    )
    assert reply["content"]["status"] == "ok"
    results = [m for m in outputs if m["msg_type"] == "execute_result"]
    assert results[0]["content"]["data"]["text/plain"] == "fine"
