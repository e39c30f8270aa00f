"""Property-based tests over everything that reads text a user or a model controls.

Each property says what may happen to any input: the parsers and validators either return a value
that keeps every visible character (no lost text) or raise :class:`bot.errors.InputRejected` with
a line fit to show the user; nothing else escapes. Reply splitting already has its own properties
(``tests/reply/test_splitting.py``); here the Matrix side is covered: event parsing, addressing,
the command prefix, and the HTML that model output becomes.
"""

from __future__ import annotations

import asyncio
import html.parser
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.discord.render import MAX_CONTENT, clip
from adapters.matrix.addressing import Facts, addressed, parse_message, strip_mention
from adapters.matrix.config import MatrixConfig
from adapters.matrix.crypto import BotClient
from adapters.matrix.render import content, edit_content, render_html
from adapters.matrix.replies import Replier
from bot.config import BotConfig
from bot.conversation.commands import (
    Cot,
    ModelPull,
    ModelSet,
    SystemSet,
    parse_command,
)
from bot.conversation.engine import Engine
from bot.errors import InputRejected
from bot.model.ollama import OllamaChatModel
from bot.reply.splitting import fence_state, split_reply, unsplit
from bot.store.sqlite import SqliteStore
from bot.validation import validate_input, validate_system_prompt

T = TypeVar("T")

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Nested JSON events are slow to generate: fewer of them, still every field shape.
MATRIX = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ZERO_WIDTH = frozenset("\u200b\u2060\ufeff")  # ZWNJ and ZWJ are text: kept


def invisible(char: str) -> bool:
    """The characters the validator promises to remove, written out independently of it."""
    code = ord(char)
    control = (code < 0x20 and char not in "\t\n") or 0x7F <= code <= 0x9F
    return control or char in _ZERO_WIDTH or 0xD800 <= code <= 0xDFFF  # lone surrogates


def visible_part(text: str) -> str:
    return "".join(c for c in text.replace("\r\n", "\n") if not invisible(c))


def attempt(call: Callable[[], T]) -> tuple[T | None, InputRejected | None]:
    """The value, or the refusal; any other exception fails the test."""
    try:
        return call(), None
    except InputRejected as err:
        return None, err


def readable(err: InputRejected) -> bool:
    """A refusal a chat user can read: one non-empty line."""
    return bool(err.user_message.strip()) and "\n" not in err.user_message.strip()


# Any code point at all, lone surrogates included (JSON can carry "\ud800" escapes), with the
# characters the validator cares about made common.
any_char = st.characters(codec=None, exclude_categories=())
tricky = st.sampled_from(
    ["\x00", "\x07", "\r\n", "\r", "\u200b", "\ufeff", "\u2060", "\x85", " ", "\ud800", "\udfff"]
)
hostile_text = st.lists(st.one_of(any_char, tricky), max_size=80).map("".join)


# --- input validation ---------------------------------------------------------------------------


@FAST
@given(text=hostile_text, limit=st.integers(1, 100))
def test_validation_keeps_every_visible_character_or_refuses_clearly(text: str, limit: int) -> None:
    cleaned, err = attempt(lambda: validate_input(text, max_chars=limit))
    if err is not None:
        expected = visible_part(text)
        assert not expected.strip() or len(expected) > limit
        assert readable(err)
        return
    assert cleaned is not None
    assert cleaned == visible_part(text)
    assert cleaned.strip()
    assert len(cleaned) <= limit


@FAST
@given(text=st.one_of(st.none(), hostile_text), limit=st.integers(1, 100))
def test_system_prompt_validation_keeps_text_blank_means_none_or_refuses(
    text: str | None, limit: int
) -> None:
    cleaned, err = attempt(lambda: validate_system_prompt(text, max_chars=limit))
    if err is not None:
        assert text is not None
        assert len(visible_part(text)) > limit
        assert readable(err)
        return
    if text is None or not visible_part(text).strip():
        assert cleaned is None
    else:
        assert cleaned == visible_part(text)


def test_a_100000_character_message_is_refused_with_its_size() -> None:
    with pytest.raises(InputRejected) as caught:
        validate_input("x" * 100_000)
    assert caught.value.user_message == "Your message is 100,000 characters; the limit is 4,096."


# --- command parsing ----------------------------------------------------------------------------

command_words = st.sampled_from(
    ["model", "models", "mode", "system", "think", "cot", "pull", "set", "show", "clear", "list",
     "on", "off", "--scope", "-s", "scope=server", "--scope=thread", "room", "stop", "reset",
     "help", "settings", "stats", "new", "/model", "!mode", '"', "'", "\\", "\x00", "\n"]
)  # fmt: skip
command_text = st.one_of(
    hostile_text,
    st.lists(st.one_of(command_words, hostile_text), max_size=8).map(" ".join),
)


@FAST
@given(text=command_text)
def test_any_command_text_parses_or_is_refused_with_usage(text: str) -> None:
    command, err = attempt(lambda: parse_command(text))
    assert (command is None) != (err is None)
    assert err is None or err.user_message.strip()


# A word as shlex reads it back unchanged: no blanks, quotes, backslashes or comment marks.
plain_word = st.text(
    st.characters(codec="utf-8", exclude_categories=("Z", "Cc", "Cs"), exclude_characters="'\"\\#"),
    min_size=1,
    max_size=30,
).filter(lambda w: w.strip() == w and w.isprintable() and not w.startswith("-") and "=" not in w)
free_text = hostile_text.filter(lambda t: t.strip() != "")


@FAST
@given(name=plain_word)
def test_model_names_reach_the_command_unchanged(name: str) -> None:
    assert parse_command(f"model set {name}") == ModelSet(name)
    assert parse_command(f"model pull {name}") == ModelPull(name)


@FAST
@given(text=free_text)
def test_system_prompt_and_cot_text_reach_the_command_whole(text: str) -> None:
    assert parse_command(f"system set {text}") == SystemSet(text.strip())
    assert parse_command(f"cot {text}") == Cot(text.strip())


# --- Matrix: event parsing, addressing, the prefix ------------------------------------------------

BOT = "@ollabot:example.org"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=10,
)


@st.composite
def matrix_events(draw: st.DrawFn) -> dict[str, Any]:
    """``m.room.message`` events whose every field may have the wrong type or shape.

    The body is usually text (else the event is dropped at once and nothing else is read); the
    relation and mention objects are usually objects whose fields have any type.
    """
    relation = st.fixed_dictionaries(
        {
            "rel_type": st.sampled_from(["m.thread", "m.replace", "m.annotation"]) | json_values,
            "event_id": hostile_text | json_values,
        },
        optional={
            "is_falling_back": json_values,
            "m.in_reply_to": json_values | st.fixed_dictionaries({"event_id": json_values}),
        },
    )
    mentions = st.fixed_dictionaries({"user_ids": json_values | st.lists(json_values)})
    event_content = draw(
        st.fixed_dictionaries(
            {"body": hostile_text | hostile_text | hostile_text | json_values},
            optional={
                "msgtype": st.sampled_from(["m.text", "m.notice", "m.emote"]) | json_values,
                "formatted_body": hostile_text | json_values,
                "m.relates_to": relation | relation | json_values,
                "m.mentions": mentions | mentions | json_values,
            },
        )
    )
    source: dict[str, Any] = {"type": "m.room.message", "content": event_content}
    source.update(draw(st.fixed_dictionaries({}, optional={"event_id": json_values})))
    source.update(draw(st.fixed_dictionaries({}, optional={"sender": json_values})))
    return source


@MATRIX
@given(source=matrix_events(), direct=st.booleans(), display=st.none() | hostile_text)
def test_any_matrix_event_is_read_or_ignored_never_a_crash(
    source: dict[str, Any], direct: bool, display: str | None
) -> None:
    message = parse_message(source)
    if message is None:
        return
    raw = source["content"]["body"]
    # No lost text: the body is kept whole; only a reply's quoted fallback may be taken off.
    assert message.body == raw if message.reply_to is None else message.body in raw
    facts = Facts(BOT, display, direct, reply_to_is_bot=False, thread_is_bot=False)
    addressed(message, facts)
    stripped = strip_mention(message.body, BOT, display)
    assert stripped in message.body


@MATRIX
@given(source=matrix_events())
def test_any_matrix_event_survives_a_json_round_trip_the_way_synapse_serves_it(
    source: dict[str, Any],
) -> None:
    # What the client reads comes out of json.loads: parse that form too.
    try:
        served = json.loads(json.dumps(source))
    except (UnicodeEncodeError, ValueError):
        return
    parse_message(served)


@pytest.fixture(scope="module")
def replier() -> Iterator[tuple[Replier, list[Coroutine[Any, Any, None]]]]:
    """The real Matrix ``Replier`` (the prefix rule needs no homeserver) and what it spawns."""
    engine = Engine(OllamaChatModel("http://127.0.0.1:9"), SqliteStore(":memory:"), BotConfig())
    config = MatrixConfig(homeserver="http://127.0.0.1:9", user_id=BOT)
    client = BotClient(config, None)  # the bot's own client class, without encryption
    spawned: list[Coroutine[Any, Any, None]] = []
    yield Replier(client, engine, config, spawned.append), spawned
    asyncio.run(engine.model.close())


@FAST
@given(rest=hostile_text)
def test_text_after_the_matrix_prefix_reaches_the_command_parser_whole(
    replier: tuple[Replier, list[Coroutine[Any, Any, None]]], rest: str
) -> None:
    # Drives the Replier's own prefix rule: what its command handler would be given.
    bot, spawned = replier
    source = {
        "type": "m.room.message",
        "event_id": "$e",
        "sender": "@someone:example.org",
        "content": {"msgtype": "m.text", "body": f"!ollabot {rest}"},
    }
    message = parse_message(source)
    assert message is not None
    spawned.clear()
    asyncio.run(bot.on_message("!room:example.org", message))
    [command] = spawned
    try:
        assert command.cr_code is Replier._command.__code__
        given_to_parser = command.cr_frame.f_locals["rest"]
    finally:
        command.close()  # inspected, never run: it would need a homeserver
    assert given_to_parser == rest.strip()
    _, err = attempt(lambda: parse_command(given_to_parser))
    assert err is None or err.user_message.strip()


# --- what model output becomes ------------------------------------------------------------------

_ALLOWED = {
    "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub",
    "li", "b", "i", "u", "strong", "em", "s", "strike", "code", "hr", "br", "div", "table",
    "thead", "tbody", "tr", "th", "td", "caption", "pre", "details", "summary",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {"a": {"href", "rel"}, "ol": {"start"}, "code": {"class"}}


class TagAudit(html.parser.HTMLParser):
    """Collects every tag and attribute of rendered HTML, as a browser would parse it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED:
            self.problems.append(f"tag <{tag}>")
        for name, value in attrs:
            if name not in _ALLOWED_ATTRIBUTES.get(tag, set()):
                self.problems.append(f"attribute {name} on <{tag}>")
            lowered = (value or "").lower().replace(" ", "")
            if name == "href" and not lowered.startswith(("http://", "https://", "mailto:")):
                self.problems.append(f"href {value!r}")
            if name == "href" and "matrix.to" in lowered:
                self.problems.append(f"pill {value!r}")


html_pieces = st.sampled_from(
    ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<h1>big</h1>",
     "[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "<a href=\"javascript:x\">y</a>",
     "[room](https://matrix.to/#/@room)", "[u](https://matrix.to/#/@alice:example.org)",
     "<https://matrix.to/#/!r:x>", "@room", "<iframe src=//x>", "<svg onload=alert(1)>",
     "<style>*{}</style>", "<details open ontoggle=alert(1)>", "<font color=red>x</font>",
     "**b**", "`c`", "```\ncode\n```\n", "# title\n", "> quote\n", "| a | b |\n|---|---|\n|1|2|\n",
     "<", ">", "&", "\"", "'", "\n", " ", "![i](https://e.x/i.png)", "<!-- x -->", "<![CDATA[x]]>"]
)  # fmt: skip
model_output = st.lists(st.one_of(html_pieces, st.text(max_size=20)), min_size=1, max_size=12).map(
    "".join
)


@FAST
@given(text=model_output)
def test_model_output_becomes_html_with_allowed_tags_only_and_no_pill(text: str) -> None:
    for body in (content(text), edit_content("$e", text)["m.new_content"]):
        assert body["m.mentions"] == {}
        assert body["body"] == text  # the plain body keeps the text exactly
        audit = TagAudit()
        audit.feed(body["formatted_body"])
        audit.close()
        assert audit.problems == [], (text, body["formatted_body"])
    assert render_html(text) == content(text)["formatted_body"]


@FAST
@given(text=st.text(max_size=3 * MAX_CONTENT))
def test_discord_results_are_clipped_to_one_message_keeping_their_start(text: str) -> None:
    shown = clip(text)
    assert len(shown) <= MAX_CONTENT
    if len(text) <= MAX_CONTENT:
        assert shown == text
    else:
        assert shown.endswith("…")
        assert text.startswith(shown[:-1])


# --- reply splitting: a case hypothesis found (bot/reply/splitting.py) ----------------------------


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("~~~\r\r\r~0 00000000", 20),
        ("~~~ ~x " + "y" * 100 + "\n" + "code\n" * 50 + "~~~\n", 100),
        ("```` `x` " + "y" * 100 + "\n" + "code\n" * 50 + "````\n", 100),
    ],
)
def test_a_reopened_fence_whose_info_starts_with_the_fence_character_still_closes(
    text: str, limit: int
) -> None:
    # Shortening the info string to its first word used to glue "~0" to "~~~": "~~~~0" opens a
    # longer fence that the "~~~" closer does not close, and the rest of the message was code.
    parts = split_reply(text, limit)
    assert unsplit(parts) == text
    for part in parts:
        assert len(part.text) <= limit
        assert fence_state(part.text) is None, part
