"""Model output becomes safe Matrix HTML: no injected markup, no pills, no pings."""

from __future__ import annotations

from adapters.matrix.render import content, edit_content, render_html, tool_calls_content
from bot.conversation.results import ToolCallsView
from bot.model.toolbox import ToolCallRecord


def test_raw_html_in_model_output_is_shown_as_text_not_markup() -> None:
    html = render_html('<script>alert(1)</script><img src="x" onerror="y"> hi')
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html


def test_markdown_renders_code_blocks_with_language_and_tables() -> None:
    html = render_html("**bold**\n\n```python\nprint(1)\n```\n\n| a |\n|---|\n| 1 |")
    assert "<strong>bold</strong>" in html
    assert '<code class="language-python">' in html
    assert "<table>" in html


def test_links_to_matrix_to_lose_their_target_so_nobody_is_pinged() -> None:
    html = render_html("[everyone](https://matrix.to/#/@room:example.org) [x](https://ex.org)")
    assert "matrix.to" not in html
    assert 'href="https://ex.org"' in html


def test_links_to_matrix_to_in_any_case_lose_their_target() -> None:
    html = render_html(
        "[a](HTTPS://MATRIX.TO/#/@room:example.org) [b](https://Matrix.To/#/@alice:ex.org)"
    )
    assert "matrix.to" not in html.lower()
    assert "<a" in html  # the links stay, without a target


def test_javascript_links_are_dropped() -> None:
    assert "<a" not in render_html('<a href="javascript:alert(1)">x</a>')
    assert 'href="javascript' not in render_html("[x](javascript:alert(1))")


def test_every_message_and_edit_carries_empty_mentions() -> None:
    assert content("@room hello")["m.mentions"] == {}
    edit = edit_content("$orig", "@room hello")
    assert edit["m.mentions"] == {}
    assert edit["m.new_content"]["m.mentions"] == {}
    assert edit["m.new_content"]["body"] == "@room hello"
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$orig"}


def test_tool_calls_fold_into_details_with_the_result_escaped() -> None:
    call = ToolCallRecord(
        "files.read_file", {"path": "<b>x</b>"}, ok=True, result="<script>@room</script>"
    )
    body = tool_calls_content(ToolCallsView("Tool calls", calls=[call]))
    html = body["formatted_body"]
    assert html.count("<details>") == 1
    assert "<summary>files.read_file → ok, 0.0 s</summary>" in html
    assert "&lt;script&gt;@room&lt;/script&gt;" in html
    assert "<script" not in html
    assert "<b>" not in html
    assert body["m.mentions"] == {}
    assert "<script>@room</script>" in body["body"]  # the plain body is text, not HTML
