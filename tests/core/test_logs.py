"""Structured logs: JSON lines, redaction of secrets everywhere, interaction records."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logs import (
    REDACTED,
    configure_logging,
    log_interaction,
    redact,
    register_secret,
    shutdown_logging,
)

DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123"
MATRIX_TOKEN = "syt_Ym90_XyZaBcDeFgHiJkLmNoPq_1a2B3c"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    old_level = root.level
    yield
    shutdown_logging()
    root.setLevel(old_level)


@pytest.fixture
def output() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    return stream


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_records_are_json_lines_with_level_logger_and_message(output: io.StringIO) -> None:
    logging.getLogger("bot.test").info("hello %s", "world", extra={"session": "d:1:-"})
    (record,) = records(output)
    assert record["message"] == "hello world"
    assert record["level"] == "INFO"
    assert record["logger"] == "bot.test"
    assert record["session"] == "d:1:-"
    assert "timestamp" in record


def test_token_in_message_extra_field_and_exception_is_redacted(output: io.StringIO) -> None:
    log = logging.getLogger("bot.test")
    log.warning("connecting with %s", DISCORD_TOKEN)
    log.info("request", extra={"headers": {"Authorization": f"Bot {DISCORD_TOKEN}"}})
    try:
        raise RuntimeError(f"login failed for token {DISCORD_TOKEN}")
    except RuntimeError:
        log.exception("login failed")

    text = output.getvalue()
    assert DISCORD_TOKEN not in text
    assert DISCORD_TOKEN[:24] not in text
    first, second, third = records(output)
    assert first["message"] == f"connecting with {REDACTED}"
    assert second["headers"] == {"Authorization": REDACTED}
    assert "RuntimeError: login failed for token [REDACTED]" in str(third["exc_info"])


def test_registered_secret_is_redacted_wherever_it_appears(output: io.StringIO) -> None:
    register_secret("hunter2-correct-horse")
    log = logging.getLogger("bot.test")
    log.info(
        "db url is postgres://bot:hunter2-correct-horse@db",
        extra={"cfg": ["hunter2-correct-horse"]},
    )
    assert "hunter2-correct-horse" not in output.getvalue()
    assert records(output)[0]["cfg"] == [REDACTED]


@pytest.mark.parametrize(
    ("raw", "leaked"),
    [
        ("Authorization: Bearer abcdefghij123456", "abcdefghij123456"),
        ('{"Authorization": "Bot xyzxyzxyz.abc"}', "xyzxyzxyz.abc"),
        ("GET /sync?access_token=secretvalue123&since=s1", "secretvalue123"),
        ('{"access_token": "secretvalue123", "user": "@bot:hs"}', "secretvalue123"),
        ('{"password": "pa55word!", "type": "m.login.password"}', "pa55word!"),
        ("password=pa55word!", "pa55word!"),
        (f"token {MATRIX_TOKEN} used", MATRIX_TOKEN),
        (f"plain {DISCORD_TOKEN}", DISCORD_TOKEN),
    ],
)
def test_known_credential_shapes_are_redacted(raw: str, leaked: str) -> None:
    cleaned = redact(raw)
    assert leaked not in cleaned
    assert REDACTED in cleaned


def test_ordinary_text_is_left_alone() -> None:
    text = "The bot replied with 42 tokens at 12.5 tokens/s; password reset is a user topic."
    assert redact(text) == text


def test_secret_named_extra_fields_are_redacted_whatever_their_value(output: io.StringIO) -> None:
    logging.getLogger("bot.test").info("login", extra={"password": "short", "user": "bot"})
    (record,) = records(output)
    assert record["password"] == REDACTED
    assert record["user"] == "bot"


def test_interaction_record_has_counters_and_no_bodies_by_default(output: io.StringIO) -> None:
    log_interaction(
        logging.getLogger("bot.conversation.engine"),
        session="discord:1:2",
        model="llama3.2",
        mode="balanced",
        prompt_tokens=10,
        eval_tokens=20,
        ttft=0.123456,
        tokens_per_second=41.666,
        outcome="complete",
        prompt="my secret diary",
        reply="I see",
    )
    (record,) = records(output)
    assert record["event"] == "interaction"
    assert record["session"] == "discord:1:2"
    assert record["model"] == "llama3.2"
    assert record["prompt_tokens"] == 10
    assert record["eval_tokens"] == 20
    assert record["ttft"] == 0.1235
    assert record["tokens_per_second"] == 41.67
    assert record["outcome"] == "complete"
    assert "prompt" not in record
    assert "reply" not in record
    assert "my secret diary" not in output.getvalue()


def test_interaction_bodies_are_logged_when_asked_and_still_redacted() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream, log_bodies=True)
    log_interaction(
        logging.getLogger("bot.conversation.engine"),
        session="s",
        model="m",
        mode="code",
        prompt_tokens=1,
        eval_tokens=1,
        ttft=None,
        tokens_per_second=None,
        outcome="complete",
        prompt=f"here is my token {DISCORD_TOKEN}",
        reply="thanks",
    )
    (record,) = records(stream)
    assert record["prompt"] == f"here is my token {REDACTED}"
    assert record["reply"] == "thanks"


def test_plain_text_mode_is_redacted_too() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream, json=False)
    logging.getLogger("bot.test").error("token=%s", MATRIX_TOKEN)
    assert MATRIX_TOKEN not in stream.getvalue()
    assert "ERROR bot.test: token=[REDACTED]" in stream.getvalue()


def test_configuring_twice_replaces_the_previous_handler() -> None:
    root = logging.getLogger()
    first = configure_logging("INFO", stream=io.StringIO())
    second = configure_logging("INFO", stream=io.StringIO())
    assert first not in root.handlers
    assert second in root.handlers
    shutdown_logging()
    assert second not in root.handlers


def test_authorization_value_is_redacted_once_and_keeps_its_scheme() -> None:
    assert redact("Authorization: Bearer abcdefghij123456") == "Authorization: Bearer [REDACTED]"
    assert redact(redact("authorization=xyz123")) == "authorization=[REDACTED]"


def test_dict_message_stays_a_dict_and_is_redacted(output: io.StringIO) -> None:
    logging.getLogger("bot.test").info({"event": "login", "access_token": "abc123456"})
    (record,) = records(output)
    assert record["event"] == "login"
    assert record["access_token"] == REDACTED
