"""A chain of thought as a reply: the model's JSON shown step by step while it streams.

The model is asked for JSON (``steps``, ``reasoning``, ``solution``; see
:class:`bot.prompts.ChainOfThoughtPrompt`). Raw JSON is no reply to show, and the reply streamer
only ever appends text, so :class:`ChainStream` turns the raw stream into display text that only
grows: each step as soon as its string is complete, then the reasoning and the solution. A reply
that is not JSON (a model that ignored the format) is shown as it comes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from bot.model.port import ChatRequest
from bot.prompts import (
    ChainOfThoughtPrompt,
    decode_partial_object,
    section_of,
    strip_step_number,
)
from bot.types import Role

__all__ = [
    "REASONING_HEADING",
    "SOLUTION_HEADING",
    "ChainStream",
    "chain_request",
    "render_chain_data",
]

REASONING_HEADING = "**Reasoning**"
SOLUTION_HEADING = "**Solution**"
_JSON_START = re.compile(r"\s*(?:\{|```)")


def chain_request(request: ChatRequest, *, num_predict: int) -> ChatRequest:
    """A turn's request turned into a chain of thought.

    The conversation stays (system prompt, history); the chain instructions join the system
    prompt, the newest message becomes the task, the JSON schema goes as ``format``, and the
    reply is bounded: ``num_predict`` unless the settings already set one (a small model that
    never closes its JSON would otherwise write until the context is full).
    """
    messages = list(request.messages)
    system = messages.pop(0).content if messages and messages[0].role is Role.SYSTEM else None
    task = messages.pop().content if messages else ""
    prompt = ChainOfThoughtPrompt(task=task)
    head, ask = prompt.messages(system)
    options = dict(request.options)
    options.setdefault("num_predict", num_predict)
    return replace(
        request,
        messages=(head, *messages, ask),
        options=options,
        format=prompt.schema(),
    )


def render_chain_data(data: dict[str, Any]) -> str:
    """The display text of a (possibly partial) chain-of-thought JSON object, in key order.

    Steps are numbered once (a model's own "1." is dropped); the reasoning follows the steps
    under one heading; the solution gets its own. Values that are not text are skipped, so
    that the text of a growing object only ever grows at its end.
    """
    blocks: list[str] = []
    seen: set[str] = set()
    reasoning_open = False
    for key, value in data.items():
        section = section_of(key)
        if section is None or section in seen:
            continue
        seen.add(section)
        if section == "steps":
            items = value if isinstance(value, list) else []
            steps = [s for s in (strip_step_number(v) for v in items if isinstance(v, str)) if s]
            body = "\n".join(f"{i}. {step}" for i, step in enumerate(steps, start=1))
        else:
            body = value.strip() if isinstance(value, str) else ""
        if not body:
            continue
        if section == "solution":
            blocks.append(f"{SOLUTION_HEADING}\n{body}")
        elif reasoning_open:
            blocks.append(body)
        else:
            reasoning_open = True
            blocks.append(f"{REASONING_HEADING}\n{body}")
    return "\n\n".join(blocks)


class ChainStream:
    """Turns a chain-of-thought reply, chunk by chunk, into display text that only grows.

    Use::

        view = ChainStream()
        for chunk in stream:
            show(view.feed(chunk))     # the new display text ("" while a step is incomplete)
        show(view.finish())            # what a cut-off reply still had to say
        view.text                      # everything shown
    """

    def __init__(self) -> None:
        self._raw: list[str] = []
        self._text = ""
        self._mode: str | None = None  # "json" or "prose", decided by the first visible text

    @property
    def text(self) -> str:
        """Everything shown so far."""
        return self._text

    @property
    def raw(self) -> str:
        """The model's text as it came."""
        return "".join(self._raw)

    def feed(self, content: str) -> str:
        """Take the model's next piece of text; returns what to append to the display."""
        if not content:
            return ""
        self._raw.append(content)
        if self._mode is None:
            head = self.raw
            if not head.strip():
                return ""
            if _JSON_START.match(head):
                self._mode = "json"
            else:
                self._mode = "prose"
                return self._append(head.lstrip())
        if self._mode == "prose":
            return self._append(content)
        if '"' not in content:
            return ""  # no string ended in this chunk: nothing new to show
        data = decode_partial_object(self.raw, trailing_strings=False)
        return self._extend(render_chain_data(data) if data else "")

    def finish(self) -> str:
        """The rest of a reply that ended (complete or cut off): returns what to append."""
        if self._mode != "json":
            return ""
        data = decode_partial_object(self.raw, trailing_strings=True)
        rendered = render_chain_data(data) if data else ""
        tail = self._extend(rendered)
        if not self._text and not tail:
            # Not even a step could be read: show the model's text rather than nothing.
            return self._append(self.raw.strip())
        return tail

    def _extend(self, rendered: str) -> str:
        # Only ever append: text already shown cannot be taken back from a platform message.
        if len(rendered) <= len(self._text) or not rendered.startswith(self._text):
            return ""
        return self._append(rendered[len(self._text) :])

    def _append(self, text: str) -> str:
        self._text += text
        return text
