"""The tool allowlist through the cascade: the narrowest scope with a rule decides."""

from __future__ import annotations

import pytest

from bot.conversation.tool_rules import ToolRules, check_pattern
from bot.errors import InputRejected
from bot.store.port import ScopeKind

THREAD, ROOM, SERVER = ScopeKind.THREAD, ScopeKind.ROOM, ScopeKind.SERVER


def test_no_mcp_tool_without_a_rule_and_builtins_by_default() -> None:
    rules = ToolRules(())
    assert rules.decide("files.read_file", "files") == (False, "default")
    assert rules.decide("calculate", None) == (True, "default")
    assert ToolRules((), builtins=False).allows("calculate", None) is False


def test_the_narrowest_scope_with_a_rule_decides() -> None:
    rules = ToolRules(
        (
            (THREAD, {"files.*": False}),
            (ROOM, {"files.read_file": True}),
            (SERVER, {"files.*": True, "calculate": False}),
        )
    )
    assert rules.decide("files.read_file", "files") == (False, "thread")
    assert rules.decide("calculate", None) == (False, "server")
    room_only = ToolRules(((ROOM, {"files.write": False}), (SERVER, {"files.*": True})))
    assert room_only.decide("files.write", "files") == (False, "room")
    assert room_only.decide("files.read", "files") == (True, "server")


def test_within_a_scope_the_tools_own_rule_goes_before_its_servers() -> None:
    rules = ToolRules(((ROOM, {"files.*": True, "files.rm": False}),))
    assert rules.allows("files.rm", "files") is False
    assert rules.allows("files.ls", "files") is True


def test_patterns_a_moderator_may_name() -> None:
    kw = {"builtins": ["calculate"], "servers": ["files"]}
    assert check_pattern(" files.* ", **kw) == "files.*"
    assert check_pattern("files.read_file", **kw) == "files.read_file"
    assert check_pattern("calculate", **kw) == "calculate"
    with pytest.raises(InputRejected, match="no tool server 'web'"):
        check_pattern("web.find", **kw)
    with pytest.raises(InputRejected, match="Unknown tool 'rm'"):
        check_pattern("rm", **kw)
    with pytest.raises(InputRejected, match="server.tool"):
        check_pattern("files.", **kw)
