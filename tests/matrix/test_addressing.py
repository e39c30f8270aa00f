"""Whether the bot is addressed, decided from the event JSON alone."""

from __future__ import annotations

from typing import Any

from adapters.matrix.addressing import Facts, Reason, addressed, parse_message, strip_mention

BOT = "@ollabot:example.org"


def event(body: str, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": "$e",
        "sender": "@alice:example.org",
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def facts(**kw: Any) -> Facts:
    base = {
        "bot_user_id": BOT,
        "bot_display_name": "Ollabot",
        "is_direct": False,
        "reply_to_is_bot": False,
        "thread_is_bot": False,
    }
    base.update(kw)
    return Facts(**base)


def reason(source: dict[str, Any], **kw: Any) -> Reason | None:
    message = parse_message(source)
    assert message is not None
    return addressed(message, facts(**kw))


def test_intentional_mention_addresses_the_bot() -> None:
    assert reason(event("hey", **{"m.mentions": {"user_ids": [BOT]}})) is Reason.MENTION


def test_name_or_pill_in_text_addresses_the_bot() -> None:
    assert reason(event("Ollabot: what is 2+2?")) is Reason.MENTION
    pill = f'<a href="https://matrix.to/#/{BOT}">bot</a> hi'
    assert reason(event("bot hi", formatted_body=pill, format="org.matrix.custom.html")) == (
        Reason.MENTION
    )


def test_name_inside_another_word_is_not_a_mention() -> None:
    assert reason(event("ollabotanical gardens")) is None


def test_plain_room_message_is_not_addressed() -> None:
    assert reason(event("hello everyone")) is None


def test_direct_room_reply_and_thread_address_the_bot() -> None:
    assert reason(event("hi"), is_direct=True) is Reason.DIRECT
    replying = event("more", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$bot"}}})
    assert reason(replying, reply_to_is_bot=True) is Reason.REPLY
    threaded = event(
        "and?", **{"m.relates_to": {"rel_type": "m.thread", "event_id": "$root",
                                    "is_falling_back": True,
                                    "m.in_reply_to": {"event_id": "$x"}}}
    )  # fmt: skip
    message = parse_message(threaded)
    assert message is not None
    assert message.thread_root == "$root"
    assert message.reply_to is None  # a thread's fallback is not a real reply
    assert reason(threaded, thread_is_bot=True) is Reason.THREAD
    assert reason(threaded, thread_is_bot=False) is None


def test_edits_and_notices_are_never_answered() -> None:
    edit = event(
        "* Ollabot hi",
        **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}},
    )
    assert reason(edit, is_direct=True) is None
    assert reason(event("Ollabot hi", msgtype="m.notice")) is None


def test_reply_fallback_and_leading_mention_are_stripped() -> None:
    source = event(
        "> <@ollabot:example.org> old answer\n\nOllabot: and now?",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": "$bot"}}},
    )
    message = parse_message(source)
    assert message is not None
    assert strip_mention(message.body, BOT, "Ollabot") == "and now?"


def test_file_with_a_caption_in_a_direct_room_is_addressed_with_the_caption_as_text() -> None:
    file = {"url": "mxc://s/abc", "key": {"k": "K"}, "iv": "IV", "hashes": {"sha256": "H"}}
    source = event("what is in here?", msgtype="m.file", filename="notes.md", file=file)
    message = parse_message(source)
    assert message is not None
    assert message.media is not None
    assert message.body == "what is in here?"
    assert (message.media.filename, message.media.mimetype) == ("notes.md", "text/markdown")
    assert message.media.key == ("K", "IV", "H")
    assert addressed(message, facts(is_direct=True)) is Reason.DIRECT


def test_image_without_caption_has_no_text_and_a_file_without_a_usable_url_is_dropped() -> None:
    image = parse_message(
        event("cat.png", msgtype="m.image", url="mxc://s/cat", info={"mimetype": "image/png"})
    )
    assert image is not None
    assert image.media is not None
    assert image.body == ""
    assert image.media.key is None
    assert image.media.mimetype == "image/png"
    assert parse_message(event("x.txt", msgtype="m.file", url="https://evil.example/x")) is None
    assert parse_message(event("x.txt", msgtype="m.file", file={"url": "mxc://s/x"})) is None
