"""Splitting replies into platform messages: exact reassembly, sizes, and balanced code fences."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from bot.reply.fences import looks_like_fence, next_state, reopen
from bot.reply.splitting import (
    MIN_MAX_CHARS,
    Cut,
    Fence,
    Part,
    _choose,
    fence_state,
    max_reserve,
    next_cut,
    split_reply,
    unsplit,
)

# --- the fence scanner ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```python\nx = 1\n", Fence("", "```", "python")),
        ("~~~\ncode\n", Fence("", "~~~", "")),
        ("   ```js\ncode", Fence("   ", "```", "js")),
        ("    ```js\nindented code, not a fence", None),
        ("``` py `x`\nbacktick in the info string: not a fence", None),
        ("~~~ py `x`\ntilde fences allow it", Fence("", "~~~", " py `x`")),
        ("```\ncode\n```\n", None),
        ("````\n```\nstill inside\n", Fence("", "````", "")),
        ("````\n```\n`````\nafter\n", None),
        ("```\n~~~\n", Fence("", "```", "")),
        ("```\n```  trailing blanks close\n", Fence("", "```", "")),
        ("```\n```   \n", None),
        ("text ``` inline\n", None),
    ],
)
def test_fence_state_follows_commonmark_fences(text: str, expected: Fence | None) -> None:
    assert fence_state(text) == expected


def _md_fences_closed(text: str) -> bool:
    """Independent oracle: markdown-it says every fenced block in ``text`` has a closing line."""
    for token in MarkdownIt("commonmark").parse(text):
        # A closed block spans its opener, its content lines and its closer.
        if token.type == "fence" and token.map is not None:
            closed = token.map[1] - token.map[0] == token.content.count("\n") + 2
            if not closed:
                return False
    return True


@pytest.mark.parametrize(
    "text",
    ["```py\na\n```\n", "~~~~\na\n~~~\n", "  ```\na\n", "```\na\n````\n", "x\n```\n```a\n"],
)
def test_fence_scanner_agrees_with_markdown_it(text: str) -> None:
    assert (fence_state(text) is None) == _md_fences_closed(text)


# --- split_reply ---------------------------------------------------------------------------------


def test_short_reply_is_one_part_unchanged() -> None:
    assert split_reply("hello", 2000) == [Part("hello")]
    assert split_reply("", 2000) == []


def test_reply_over_limit_is_cut_at_the_latest_line_start_not_an_earlier_paragraph() -> None:
    text = "a" * 60 + "\n\n" + "b" * 30 + "\n" + "c" * 30
    parts = split_reply(text, 100)
    assert [p.body for p in parts] == ["a" * 60 + "\n\n" + "b" * 30 + "\n", "c" * 30]


def test_prose_is_cut_at_the_latest_word_and_code_at_the_latest_line() -> None:
    lines = "first line here\n" * 5
    parts = split_reply(lines + "x" * 30, 60)
    assert [p.body for p in parts] == [lines[:48] + "first line ", "here\n" + lines[:16] + "x" * 30]
    words = "alpha beta gamma " * 10
    parts = split_reply(words, 40)
    assert all(p.body.endswith(" ") and len(p.body) > 40 - len("gamma ") for p in parts[:-1])
    assert unsplit(parts) == words
    code = "```\n" + lines + "```\n"
    parts = split_reply(code, 60)
    assert [p.body for p in parts] == ["```\n" + lines[:48], lines[:32] + "```\n"]
    assert all(p.text.count("first line here\n") == p.body.count("first line here") for p in parts)


def test_single_word_longer_than_a_message_is_hard_cut() -> None:
    text = "x" * 250
    parts = split_reply(text, 100)
    assert [len(p.body) for p in parts] == [100, 100, 50]


def test_reply_over_limit_keeps_code_fence_intact() -> None:
    code = "\n".join(f"print({i})" for i in range(60)) + "\n"
    text = "Here is the code:\n\n```python\n" + code + "```\n\nDone."
    parts = split_reply(text, 200)
    assert len(parts) > 2
    assert unsplit(parts) == text
    md = MarkdownIt("commonmark")
    pieces = []
    for index, part in enumerate(parts):
        assert len(part.text) <= 200
        assert fence_state(part.text) is None
        assert _md_fences_closed(part.text)
        fences = [t for t in md.parse(part.text) if t.type == "fence"]
        if index > 0 and part.body.strip() != "Done.":
            assert part.prefix == "```python\n"
        pieces.extend(t.content for t in fences)
        assert all(t.info == "python" for t in fences)
    # The code blocks, rendered message by message, hold the original code and nothing else.
    assert "".join(pieces) == code


def test_tilde_and_indented_fences_are_reopened_as_written() -> None:
    text = "  ~~~~ text title\n" + "line of text\n" * 30 + "  ~~~~\n"
    parts = split_reply(text, 100)
    assert len(parts) > 1
    for part in parts[1:]:
        assert part.prefix.startswith("  ~~~~ text title\n")
    for part in parts[:-1]:
        assert part.suffix.endswith("~~~~")
    assert unsplit(parts) == text


def test_unclosed_fence_at_the_end_is_closed_in_the_message() -> None:
    parts = split_reply("```sh\nls -la", 2000)
    assert parts == [Part("```sh\nls -la", "", "\n```")]


def test_last_part_leaves_room_for_the_footer() -> None:
    text = "word " * 30  # 150 characters
    parts = split_reply(text, 160, reserve=40)
    assert len(parts) == 2
    assert len(parts[-1].text) <= 120
    assert unsplit(parts) == text


def test_huge_info_string_is_shortened_so_text_still_fits() -> None:
    text = "```python " + "x" * 300 + "\n" + "code\n" * 100 + "```\n"
    parts = split_reply(text, 100)
    assert unsplit(parts) == text
    assert all(len(p.text) <= 100 and fence_state(p.text) is None for p in parts)
    assert parts[1].prefix == "```python\n"


def test_too_small_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        split_reply("abc", 10)
    with pytest.raises(ValueError, match="reserve"):
        split_reply("abc", 100, reserve=max_reserve(100) + 1)


# --- incremental cuts ----------------------------------------------------------------------------


def _stream_split(text: str, cuts: list[int], max_chars: int, reserve: int) -> list[Part]:
    """Split as the streamer does: freeze parts while the text grows, then finish."""
    frozen: list[Part] = []
    start, fence = 0, None
    for end in [*sorted(cuts), len(text)]:
        grown = text[:end]
        while (cut := next_cut(grown, start, max_chars, fence=fence, more_coming=True)) is not None:
            frozen.append(cut.part)
            start, fence = cut.end, cut.fence
    while (
        cut := next_cut(text, start, max_chars, fence=fence, more_coming=False, reserve=reserve)
    ) is not None:
        frozen.append(cut.part)
        start, fence = cut.end, cut.fence
    return frozen


def test_parts_frozen_while_streaming_equal_the_whole_split() -> None:
    text = "Intro.\n\n```python\n" + "x = 1\n" * 80 + "```\n\n" + "end " * 40
    streamed = _stream_split(text, list(range(0, len(text), 7)), 120, 30)
    assert streamed == split_reply(text, 120, reserve=30)


# --- properties ----------------------------------------------------------------------------------

_fence_lines = st.builds(
    lambda indent, char, n, info: " " * indent + char * n + info + "\n",
    st.integers(0, 4),
    st.sampled_from(["`", "~"]),
    st.integers(3, 5),
    st.sampled_from(["", "python", " js", "c++ title", "x`y"]),
)
_pieces = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(alphabet="ab `~\n\t é🙂", min_size=1, max_size=40),
    # What str.splitlines() would break on but a Markdown line does not (see bot.reply.splitting).
    st.text(alphabet="a~`\r\n \x0b\x1c\u2028\x85", min_size=1, max_size=20),
    st.sampled_from(["\n", "\n\n", "\r\n", "\r\n\r\n", " ", "```", "~~~", "  ```", "- item\n"]),
    _fence_lines,
    st.integers(20, 600).map(lambda n: "w" * n),
)
texts = st.lists(_pieces, max_size=40).map("".join)


@st.composite
def limits(draw: st.DrawFn) -> tuple[int, int]:
    max_chars = draw(st.integers(20, 2000))
    reserve = draw(st.integers(0, max_reserve(max_chars)))
    return max_chars, reserve


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, limit=limits())
def test_any_split_reassembles_fits_and_balances_fences(text: str, limit: tuple[int, int]) -> None:
    max_chars, reserve = limit
    parts = split_reply(text, max_chars, reserve=reserve)
    assert unsplit(parts) == text
    for index, part in enumerate(parts):
        cap = max_chars - reserve if index == len(parts) - 1 else max_chars
        assert len(part.text) <= cap
        assert part.body
        assert fence_state(part.text) is None, part.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, limit=limits(), data=st.data())
def test_streamed_cuts_never_differ_from_the_final_split(
    text: str, limit: tuple[int, int], data: st.DataObject
) -> None:
    max_chars, reserve = limit
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=20))
    assert _stream_split(text, cuts, max_chars, reserve) == split_reply(
        text, max_chars, reserve=reserve
    )


# --- line breaks: only "\n" ends a line ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A lone "\r" (or "\x0b", "\u2028") is text inside the line: here, of the info string.
        ("~~~\r\r\r~0 00000000", Fence("", "~~~", "\r\r\r~0 00000000")),
        ("~~~\u2028x\n", Fence("", "~~~", "\u2028x")),
        ("```\x0b```\n", None),  # a backtick in the info string: not a fence
        # "\r\n" ends a line like "\n".
        ("```py\r\ncode\r\n", Fence("", "```", "py")),
        ("```py\r\ncode\r\n```\r\n", None),
        ("```py\r\ncode\r\n```\r\r\n", Fence("", "```", "py")),
    ],
)
def test_only_newline_ends_a_line_for_the_fence_scanner(text: str, expected: Fence | None) -> None:
    assert fence_state(text) == expected


@pytest.mark.parametrize("max_chars", range(MIN_MAX_CHARS, 40))
def test_carriage_returns_in_a_fence_line_split_into_balanced_parts(max_chars: int) -> None:
    # Found by hypothesis: "\r" is part of the info string, but str.split() took "~0" for its
    # first word, and the shortened reopener "~~~~0" opened a fence "~~~" could not close.
    text = "~~~\r\r\r~0 00000000"
    parts = split_reply(text, max_chars)
    assert unsplit(parts) == text
    for part in parts:
        assert len(part.text) <= max_chars
        assert fence_state(part.text) is None, part


def test_shortened_reopener_splits_the_info_string_on_blanks_only() -> None:
    fence = Fence("", "~~~", "\r\r\r~0 " + "0" * 40)
    assert reopen(fence, 40) == Fence("", "~~~", "\r\r\r~0")
    assert reopen(Fence("", "~~~", " ~x " + "y" * 40), 40) == Fence("", "~~~", " ~x")


def test_crlf_reply_is_cut_at_line_ends_and_keeps_fences_balanced() -> None:
    code = "".join(f"print({i})\r\n" for i in range(40))
    text = "Code:\r\n\r\n```python\r\n" + code + "```\r\n\r\nDone.\r\n"
    parts = split_reply(text, 120)
    assert len(parts) > 2
    assert unsplit(parts) == text
    for part in parts:
        assert len(part.text) <= 120
        assert fence_state(part.text) is None, part
        assert part.body.endswith("\r\n")  # a CRLF line is never cut between "\r" and "\n"
    assert all(p.prefix == "```python\n" for p in parts[1:-1])
    assert _stream_split(text, list(range(0, len(text), 5)), 120, 0) == parts


# --- the cut chooser against the original one ----------------------------------------------------


@dataclass(slots=True)
class _Candidate:
    offset: int
    state: Fence | None
    kind: int


_PARAGRAPH, _LINE, _WORD, _HARD, _UNSAFE = range(5)


def _reference_choose(
    window: str, carried: Fence | None, prefix_len: int, max_chars: int
) -> tuple[int, Fence | None]:
    """The chooser written plainly (classifies every offset of the window), kept as an oracle."""
    allowed = _allowed(window, carried, prefix_len, max_chars)
    if allowed:
        return _latest(allowed)
    return 1, fence_state(window[:1], carried)


def _allowed(
    window: str, carried: Fence | None, prefix_len: int, max_chars: int
) -> list[_Candidate]:
    """Every cut of the window that keeps the splitting rules (the chooser takes the latest)."""
    candidates = list(_reference_candidates(window, carried))

    def fits(c: _Candidate) -> bool:
        ends_line = window[c.offset - 1] == "\n"
        suffix = 0 if c.state is None else len(c.state.closer) + (0 if ends_line else 1)
        return prefix_len + c.offset + suffix <= max_chars

    fitting = [c for c in candidates if fits(c)]
    first_ink = len(window) - len(window.lstrip())
    inked = [c for c in fitting if c.offset > first_ink]
    min_fill = (max_chars - prefix_len) // 2
    # A line start, a word cut outside code, or a word cut inside code when no line start fills
    # half the message.
    line_starts = [c for c in inked if c.kind in (_PARAGRAPH, _LINE)]
    soft = [*line_starts, *(c for c in inked if c.kind == _WORD and c.state is None)]
    if not any(c.offset >= min_fill for c in line_starts):
        soft += [c for c in inked if c.kind == _WORD and c.state is not None]
    for allowed in (
        soft,
        [c for c in inked if c.kind == _HARD],
        [c for c in inked if c.kind == _UNSAFE],
    ):
        if allowed:
            return allowed
    return fitting


def _latest(candidates: Iterable[_Candidate]) -> tuple[int, Fence | None]:
    best = max(candidates, key=lambda c: c.offset)
    return best.offset, best.state


def _reference_candidates(window: str, carried: Fence | None) -> Iterable[_Candidate]:
    state = carried
    line_start = 0
    previous_blank = False
    length = len(window)
    while line_start < length:
        newline = window.find("\n", line_start)
        line_end = length if newline < 0 else newline
        line = window[line_start:line_end]
        if line_start > 0:
            yield _Candidate(line_start, state, _PARAGRAPH if previous_blank else _LINE)
        after = next_state(line, state)
        line_is_fence = after is not state
        head_fency = looks_like_fence(window, line_start, line_end)
        for offset in range(line_start + 1, min(line_end + 1, length)):
            head_state = state
            if head_fency:
                head_state = next_state(window[line_start:offset], state)
            unsafe = line_is_fence or head_state is not state
            if not unsafe and looks_like_fence(window, offset, line_end):
                unsafe = next_state(window[offset:line_end], head_state) is not head_state
            if unsafe:
                yield _Candidate(offset, head_state, _UNSAFE)
            elif window[offset - 1] in " \t" and offset < line_end and window[offset] not in " \t":
                yield _Candidate(offset, state, _WORD)
            else:
                yield _Candidate(offset, state, _HARD)
        previous_blank = not line.strip()
        state = after
        line_start = line_end + 1


_carried = st.one_of(
    st.none(),
    st.builds(
        Fence,
        st.sampled_from(["", " ", "   "]),
        st.sampled_from(["```", "````", "~~~", "~~~~~"]),
        st.sampled_from(["", "python", " js", "c++ title", " ~x y", "\r~0 0"]),
    ),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, carried=_carried, max_chars=st.integers(MIN_MAX_CHARS, 400))
# Only hard cuts before later unsafe ones: the hard cut wins, however early.
@example(text="``` `", carried=None, max_chars=20)
@example(text="~~~\r\r\r~0 00000000", carried=None, max_chars=20)
def test_cut_chooser_picks_what_the_original_chooser_picked(
    text: str, carried: Fence | None, max_chars: int
) -> None:
    fence = reopen(carried, max_chars)
    prefix_len = len(fence.opener) + 1 if fence is not None else 0
    # next_cut hands the chooser at most room + 1 characters.
    window = text[: max_chars - prefix_len + 1]
    if not window:
        return
    expected = _reference_choose(window, fence, prefix_len, max_chars)
    assert _choose(window, fence, prefix_len, max_chars) == expected


# --- the fewest messages ------------------------------------------------------------------------


def _fewest_parts(text: str, max_chars: int, reserve: int) -> int:
    """The fewest messages any sequence of rule-keeping cuts gives (a search over all of them)."""
    if not text:
        return 0
    frontier: dict[tuple[int, Fence | None], None] = {(0, None): None}
    parts = 0
    while frontier:
        parts += 1
        following: dict[tuple[int, Fence | None], None] = {}
        for start, fence in frontier:
            carried = reopen(fence, max_chars)
            prefix = len(carried.opener) + 1 if carried is not None else 0
            rest = text[start:]
            closer = len(closing_suffix_of(rest, carried))
            if prefix + len(rest) + closer <= max_chars - reserve:
                return parts  # the rest is the last message
            window = rest[: max_chars - prefix + 1]
            for cut in _allowed(window, carried, prefix, max_chars):
                following[(start + cut.offset, reopen(cut.state, max_chars))] = None
        frontier = following
    raise AssertionError("no split")


def closing_suffix_of(body: str, carried: Fence | None) -> str:
    return next_cut(body, 0, 10**6, fence=carried, more_coming=False).part.suffix  # type: ignore[union-attr]


_prose = st.lists(
    st.one_of(
        st.text(alphabet="abcdefghij.,", min_size=1, max_size=15),
        st.sampled_from([" ", " ", "\n", "\n\n", "  ", "\t"]),
        st.integers(15, 60).map(lambda n: "w" * n),  # sometimes longer than a message
    ),
    max_size=100,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_prose, max_chars=st.integers(MIN_MAX_CHARS, 150), share=st.floats(0, 1))
# A paragraph break that fills half the message used to win over a later word: three messages.
@example(text="abc a ab\n\nab abcd abcd abcd\n\nabc", max_chars=20, share=0.0)
def test_a_reply_takes_the_fewest_messages_the_rules_allow(
    text: str, max_chars: int, share: float
) -> None:
    """Issue 10, point 8: no other rule-keeping split of the text has fewer messages."""
    reserve = int(share * max_reserve(max_chars))
    fewest = _fewest_parts(text, max_chars, reserve)
    assert len(split_reply(text, max_chars, reserve=reserve)) == fewest


def answer_of_5856_characters() -> str:
    """Prose in paragraphs of six sentences, like a model's long answer."""
    sentences = [f"Sentence {i} of the answer explains one more detail." for i in range(120)]
    paragraphs = [" ".join(sentences[i : i + 6]) for i in range(0, 120, 6)]
    answer = "\n\n".join(paragraphs)[:5856]
    assert len(answer) == 5856
    assert answer.endswith("Sentence 112")
    return answer


def test_a_5856_character_answer_takes_three_messages_not_four() -> None:
    """The case from the Discord bench: the paragraph-first cuts took four (the last of 224)."""
    answer = answer_of_5856_characters()
    parts = split_reply(answer, 2000, reserve=60)
    assert len(parts) == 3
    assert [len(p.body) for p in parts] == [1998, 2000, 1858]
    assert all(p.body.endswith(" ") for p in parts[:-1])  # between two words, never inside one
    assert unsplit(parts) == answer
    assert _fewest_parts(answer, 2000, 60) == 3


# --- exact cuts at the edges (mutation testing of splitting.py found these unchecked) ----------


def test_a_reply_of_exactly_the_limit_is_one_message() -> None:
    assert split_reply("x" * 100, 100) == [Part("x" * 100)]
    assert next_cut("x" * 100, 0, 100, more_coming=False) == Cut(100, Part("x" * 100), None)
    # An unclosed block whose closing line lands exactly on the limit still fits.
    code = "```\n" + "c" * 92
    assert split_reply(code, 100) == [Part(code, "", "\n```")]


def test_the_footer_reserve_is_at_most_just_under_half_a_message() -> None:
    assert (max_reserve(100), max_reserve(21), max_reserve(2000)) == (49, 10, 999)
    assert split_reply("x" * 51, 100, reserve=49) == [Part("x" * 51)]
    assert [len(p.body) for p in split_reply("x" * 52, 100, reserve=49)] == [51, 1]
    with pytest.raises(ValueError, match=r"^reserve must be between 0 and 49 for max_chars=100$"):
        split_reply("x", 100, reserve=50)


def test_a_streamed_part_inside_a_code_block_is_cut_once_it_cannot_fit_with_the_reopener() -> None:
    fence = Fence("", "```", "py")
    text = "y" * 45  # 6 characters of "```py\n" leave room for 44
    cut = next_cut(text, 0, 50, fence=fence, more_coming=True)
    assert cut is not None
    assert (cut.end, cut.part.text) == (40, "```py\n" + "y" * 40 + "\n```")
    assert next_cut(text[:44], 0, 50, fence=fence, more_coming=True) is None  # still fits


def test_the_last_part_reports_the_code_block_left_open_at_the_end() -> None:
    cut = next_cut("```py\ncode", 0, 100, more_coming=False)
    assert cut == Cut(10, Part("```py\ncode", "", "\n```"), Fence("", "```", "py"))


def test_only_spaces_and_tabs_make_a_word_cut_whatever_the_letters() -> None:
    # No blank anywhere: a hard cut at the limit, even right after an "X".
    assert [p.body for p in split_reply("Y" * 19 + "X" + "Y" * 10, 20)] == [
        "Y" * 19 + "X",
        "Y" * 10,
    ]
    # A word that starts with "X" is still a word: the cut goes before it.
    assert [p.body for p in split_reply("a" * 12 + " " + "X" * 20, 20)] == [
        "a" * 12 + " ",
        "X" * 20,
    ]


def test_a_code_line_end_exactly_half_way_still_keeps_the_next_line_whole() -> None:
    # 41 characters: half is 20, where the long line of words starts.
    text = "```\n" + "a" * 15 + "\n" + "b " * 20 + "\n```\n"
    parts = split_reply(text, 41)
    assert parts[0].body == "```\n" + "a" * 15 + "\n"  # not a later cut between the b's
    assert parts[1].body.startswith("b b b")


def test_a_continued_code_block_counts_half_a_message_after_its_reopener() -> None:
    # 44 characters with "```\n" reopened: 40 of room, half is 20; the line end at 22 wins over
    # a later cut between the words of the next line.
    window = "a" * 21 + "\n" + ("b " * 20)[:19]
    assert _choose(window, Fence("", "```", ""), 4, 44) == (22, Fence("", "```", ""))
