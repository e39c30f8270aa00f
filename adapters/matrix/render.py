"""Model markdown to Matrix ``formatted_body`` HTML that cannot inject anything.

Two layers: markdown-it-py renders with raw HTML disabled (a ``<script>`` in the model's output
is shown as text), then nh3 keeps only the tags and attributes of the Matrix spec's HTML
allow-list. Links to ``matrix.to`` lose their target, so model output can never produce a pill
that pings someone or the room; every bot message also carries an empty ``m.mentions``.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt

from bot.conversation.results import ToolCallsView, call_outcome

__all__ = ["content", "edit_content", "render_html", "tool_calls_content"]

# The Matrix client-server spec's suggested allow-list, minus <img> (tracking pixels, and only
# mxc:// URLs would render anyway) and <font>/<span> colour tricks.
_TAGS = {
    "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub",
    "li", "b", "i", "u", "strong", "em", "s", "strike", "code", "hr", "br", "div", "table",
    "thead", "tbody", "tr", "th", "td", "caption", "pre", "details", "summary",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}, "code": {"class"}}
_URL_SCHEMES = {"http", "https", "mailto"}

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(
    ["table", "strikethrough"]
)


def _is_pill(url: str) -> bool:
    """A link clients show as a pill: to matrix.to (any case; hosts are case-insensitive)."""
    try:
        host = urlsplit(url.strip()).hostname  # lower-cased by urlsplit
    except ValueError:
        return True  # unreadable: not worth the risk
    return host is not None and (host == "matrix.to" or host.endswith(".matrix.to"))


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href" and _is_pill(value):
        return None  # no pills: a link to a user or @room would ping
    if tag == "code" and attribute == "class" and not value.startswith("language-"):
        return None
    return value


def render_html(markdown: str) -> str:
    """Render ``markdown`` to sanitized HTML for ``formatted_body``."""
    return _clean(_markdown.render(markdown))


def _clean(html: str) -> str:
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        attribute_filter=_filter_attribute,
        link_rel="noopener noreferrer",
    ).strip()


def content(text: str, *, msgtype: str = "m.text") -> dict[str, Any]:
    """A message content for ``text``: plain body, sanitized HTML, and no mentions at all."""
    return {
        "msgtype": msgtype,
        "body": text,
        "format": "org.matrix.custom.html",
        "formatted_body": render_html(text),
        "m.mentions": {},
    }


def tool_calls_content(view: ToolCallsView, *, msgtype: str = "m.notice") -> dict[str, Any]:
    """The full calls and results of a reply, each folded in a ``<details>`` block.

    Arguments and results are untrusted: escaped into ``<pre><code>``, then sanitized like
    every message, with no mentions.
    """
    parts = [f"<p><strong>{escape(view.title)}</strong></p>"]
    for call in view.calls:
        summary = escape(f"{call.name} → {call_outcome(call)}")
        arguments = escape(json.dumps(dict(call.arguments), indent=2, ensure_ascii=False))
        parts.append(
            f"<details><summary>{summary}</summary>"
            f"<pre><code>{arguments}</code></pre><pre><code>{escape(call.result)}</code></pre>"
            "</details>"
        )
    return {
        "msgtype": msgtype,
        "body": f"{view.title}\n\n{view.as_text()}",
        "format": "org.matrix.custom.html",
        "formatted_body": _clean("".join(parts)),
        "m.mentions": {},
    }


def edit_content(event_id: str, text: str, *, msgtype: str = "m.text") -> dict[str, Any]:
    """An ``m.replace`` edit of ``event_id`` whose new content is ``text``."""
    new = content(text, msgtype=msgtype)
    return {
        "msgtype": msgtype,
        "body": f"* {text}",
        "format": "org.matrix.custom.html",
        "formatted_body": f"* {new['formatted_body']}",
        "m.new_content": new,
        "m.mentions": {},
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }
