"""The tools' argument rules and annotations (peers.tools)."""

from __future__ import annotations

from typing import Any

import pytest

from peers.tools import TOOLS, ToolInputError, check_args, tools_for


def test_arguments_a_client_adds_are_ignored_silently() -> None:
    checked = check_args("send_message", {"to_id": "bob", "message": "hi", "wait_for_previous": True})
    assert checked.args == {"to_id": "bob", "message": "hi"}
    assert checked.ignored == ()
    assert check_args("whoami", {"_meta": {}}).ignored == ()


@pytest.mark.parametrize(
    ("tool", "args", "meant"),
    [
        ("send_message", {"to": "bob", "message": "hi"}, "to_id"),
        ("send_message", {"recipient": "bob", "message": "hi"}, "to_id"),
        ("send_message", {"peer_id": "bob", "message": "hi"}, "to_id"),
        ("send_message", {"to_id": "bob", "body": "hi"}, "message"),
        ("send_message", {"to_id": "bob", "mesage": "hi"}, "message"),
        ("send_message", {"toId": "bob", "message": "hi"}, "to_id"),
        ("send_message", {"to_id": "bob", "message": "hi", "in_reply_to": "01x"}, "reply_to"),
        ("send_message", {"To_Id": "bob", "message": "hi"}, "to_id"),
        ("kill_peer", {"id": "bob"}, "peer_id"),
        ("set_summary", {"text": "x"}, "summary"),
        ("broadcast_message", {"message": "x", "scopes": "all"}, "scope"),
    ],
)
def test_slips_for_a_real_argument_are_errors_naming_it(
    tool: str, args: dict[str, Any], meant: str
) -> None:
    with pytest.raises(ToolInputError, match=f"did you mean '{meant}'") as err:
        check_args(tool, args)
    assert meant in (err.value.allowed or [])
    assert err.value.hint and meant in err.value.hint


def test_other_unknown_arguments_are_ignored_and_reported() -> None:
    checked = check_args("list_peers", {"scope": "all", "colour": "red", "verbose": True})
    assert checked.args == {"scope": "all"}
    assert checked.ignored == ("colour", "verbose")
    # An alias next to the real argument is not taken for a slip.
    both = check_args("send_message", {"to_id": "bob", "to": "carol", "message": "hi"})
    assert both.args["to_id"] == "bob" and both.ignored == ("to",)


def test_types_enums_and_required_arguments() -> None:
    with pytest.raises(ToolInputError, match="missing required argument 'to_id'"):
        check_args("send_message", {"message": "hi"})
    with pytest.raises(ToolInputError, match="must be a string"):
        check_args("send_message", {"to_id": "bob", "message": 42})
    with pytest.raises(ToolInputError, match="must be one of") as err:
        check_args("list_peers", {"scope": "galaxy"})
    assert err.value.allowed == ["machine", "directory", "repo", "all"]
    assert check_args("send_message", {"to_id": "b", "message": "m", "reply_to": None}).args == {
        "to_id": "b",
        "message": "m",
    }


def test_every_tool_is_annotated_and_only_kill_is_destructive() -> None:
    for tool in TOOLS:
        hints = tool["annotations"]
        assert set(hints) == {
            "title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint",
        }  # fmt: skip
        assert hints["openWorldHint"] is False
        assert hints["destructiveHint"] is (tool["name"] == "kill_peer")
        # What Codex runs without asking: read-only, or not destructive in a closed world.
        runs_unasked = hints["readOnlyHint"] or not hints["destructiveHint"]
        assert runs_unasked is (tool["name"] != "kill_peer")
    read_only = {t["name"] for t in TOOLS if t["annotations"]["readOnlyHint"]}
    assert read_only == {"list_peers", "whoami"}


def test_kill_peer_is_offered_only_when_allowed() -> None:
    assert "kill_peer" not in {t["name"] for t in tools_for(allow_kill=False)}
    assert "kill_peer" in {t["name"] for t in tools_for(allow_kill=True)}


@pytest.mark.parametrize(
    ("args", "meant"),
    [
        ({"timeout": 30}, "timeout_s"),
        ({"seconds": 30}, "timeout_s"),
        ({"from_id": "bob"}, "from"),
        ({"sender": "bob"}, "from"),
        ({"in_reply_to": "01x"}, "reply_to"),
        ({"timeout_sec": 5}, "timeout_s"),
    ],
)
def test_wait_for_messages_slips_name_the_argument_meant(args: dict[str, Any], meant: str) -> None:
    with pytest.raises(ToolInputError, match=f"did you mean '{meant}'"):
        check_args("wait_for_messages", args)


def test_wait_for_messages_numbers() -> None:
    assert check_args("wait_for_messages", {}).args == {}
    assert check_args("wait_for_messages", {"timeout_s": 30}).args == {"timeout_s": 30.0}
    assert check_args("wait_for_messages", {"timeout_s": 0.5}).args == {"timeout_s": 0.5}
    # Models sometimes quote numbers.
    assert check_args("wait_for_messages", {"timeout_s": " 90 "}).args == {"timeout_s": 90.0}
    for bad in ("soon", True, [30], {"s": 1}, float("nan"), float("inf"), "1e999"):
        with pytest.raises(ToolInputError, match="must be a number"):
            check_args("wait_for_messages", {"timeout_s": bad})
    with pytest.raises(ToolInputError, match="at least 0") as err:
        check_args("wait_for_messages", {"timeout_s": -1})
    assert err.value.hint and "600" in err.value.hint
    # More than the maximum passes here: the wait cuts it to 600 s and says so.
    assert check_args("wait_for_messages", {"timeout_s": 3600}).args == {"timeout_s": 3600.0}


def test_wait_for_messages_is_annotated_like_check_messages() -> None:
    """It takes mail as check_messages does: not read-only, not destructive, a closed world."""
    hints = {t["name"]: {k: v for k, v in t["annotations"].items() if k != "title"} for t in TOOLS}
    assert hints["wait_for_messages"] == hints["check_messages"]
    assert hints["wait_for_messages"]["readOnlyHint"] is False
