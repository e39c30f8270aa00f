"""Small assertions on what a Discord user would see in the fake."""

from __future__ import annotations

import re

from tests.fakes.fake_discord import FakeDiscord, FakeMessage

FOOTER = re.compile(r"(^|\n)(-# |⚠️ )[^\n]*$")


def is_finished(message: FakeMessage) -> bool:
    """A reply's last message ends with the footer the bot adds when the reply is done."""
    return bool(FOOTER.search(message.content))


def without_footer(text: str) -> str:
    return FOOTER.sub("", text)


async def finished_reply(
    fake: FakeDiscord, channel_id: int, *, after: int = 0, within: float = 10.0
) -> list[FakeMessage]:
    """Wait until a reply of the bot in the channel is finished; its messages, in order.

    Args:
        after: Ignore the first ``after`` bot messages of the channel (earlier replies).
    """

    def done() -> list[FakeMessage] | None:
        msgs = [m for m in fake.bot_messages_in(channel_id) if not m.loading][after:]
        for i, m in enumerate(msgs):
            if is_finished(m):
                return msgs[: i + 1]
        return None

    result: list[FakeMessage] = await fake.wait_for(done, within)
    return result


def inside_fence(text: str) -> bool:
    return sum(1 for line in text.split("\n") if line.lstrip().startswith("```")) % 2 == 1


def reassemble(texts: list[str], original: str) -> int:
    """Check that ``texts`` are ``original`` cut into pieces, with fences closed and reopened.

    Returns how much of ``original`` was matched (its length when all of it was).
    """
    pos = 0
    for i, text in enumerate(texts):
        assert not inside_fence(text), f"message {i} has an unbalanced fence"
        if i and inside_fence(original[:pos]):
            first, _, text = text.partition("\n")
            assert first.startswith("```"), f"message {i} does not reopen the code block"
        if original.startswith(text, pos):
            pos += len(text)
            continue
        assert text.endswith("```"), f"message {i} is not a slice of the output"
        # The closing fence was added: "```" after a body ending in a newline, else "\n```".
        after_newline = text.endswith("\n```") and original.startswith(text[:-3], pos)
        body = text[:-3] if after_newline else text[:-4]
        assert original.startswith(body, pos), f"message {i} is not a slice of the output"
        pos += len(body)
        assert inside_fence(original[:pos]), f"message {i} closes a fence the output did not open"
    return pos
