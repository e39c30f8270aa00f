"""Chain-of-thought prompting: ask for steps, reasoning and a solution as structured output.

The model is asked for JSON matching :meth:`ChainOfThoughtPrompt.schema` (sent as Ollama's
``format``), but models do not always comply, so :func:`parse_chain` also reads JSON in a code
fence, JSON followed by chatter, and plain prose with "Reasoning:" / "Solution:" markers or
numbered steps. It never raises.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import from_json

from bot.types import Message, Role

__all__ = [
    "ChainOfThoughtPrompt",
    "ChainResult",
    "decode_partial_object",
    "parse_chain",
    "section_of",
    "strip_step_number",
]

_SYSTEM = (
    "You solve problems step by step. Think through the task in clear, numbered steps, then give "
    'the final solution. Reply with JSON only, with the keys "steps" (a list of short strings, '
    'one per step), "reasoning" (your reasoning in prose) and "solution" (the final answer only).'
)


class ChainResult(BaseModel):
    """The parsed answer to a :class:`ChainOfThoughtPrompt`.

    Attributes:
        reasoning: How the model got there, in prose (may be empty).
        solution: The final answer (empty only if the model said nothing usable).
        steps: The steps it took, in order (may be empty).
    """

    reasoning: str = ""
    solution: str = ""
    steps: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ChainOfThoughtPrompt:
    """A task to solve step by step.

    Attributes:
        task: The problem, in the user's words.
        steps: ``None`` lets the model choose its steps; an ``int`` asks for that many; a list
            names the steps to follow, in order.
    """

    task: str
    steps: int | list[str] | None = None

    def schema(self) -> dict[str, Any]:
        """The JSON schema to send as Ollama's ``format``."""
        steps_schema: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
        count = self._step_count()
        if count is not None:
            steps_schema["minItems"] = count
            steps_schema["maxItems"] = count
        return {
            "type": "object",
            "properties": {
                "steps": steps_schema,
                "reasoning": {"type": "string"},
                "solution": {"type": "string"},
            },
            "required": ["steps", "reasoning", "solution"],
        }

    def _step_count(self) -> int | None:
        if isinstance(self.steps, int):
            return self.steps if self.steps > 0 else None
        if isinstance(self.steps, list) and self.steps:
            return len(self.steps)
        return None

    def user_text(self) -> str:
        """The user message: the task and, if given, the steps to follow."""
        parts = [f"Task: {self.task.strip()}"]
        if isinstance(self.steps, list) and self.steps:
            listed = "\n".join(f"{i}. {step}" for i, step in enumerate(self.steps, start=1))
            parts.append(f"Follow these steps, in order:\n{listed}")
        elif isinstance(self.steps, int) and self.steps > 0:
            parts.append(f"Use exactly {self.steps} steps.")
        return "\n\n".join(parts)

    def messages(self, system_prompt: str | None = None) -> list[Message]:
        """The messages to send: a system prompt (``system_prompt`` first, if any) and the task."""
        system = f"{system_prompt.strip()}\n\n{_SYSTEM}" if system_prompt else _SYSTEM
        return [
            Message(role=Role.SYSTEM, content=system),
            Message(role=Role.USER, content=self.user_text()),
        ]


# --------------------------------------------------------------------------------------------
# Parsing

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_JSON_STARTS = 20
_SOLUTION_KEYS = ("solution", "answer", "final_answer", "final answer", "result", "conclusion")
_REASONING_KEYS = ("reasoning", "explanation", "thoughts", "rationale", "thinking")
_STEP_KEYS = ("steps", "step", "chain", "plan")

_MARKER = re.compile(
    r"^[ \t>#*_]*(?P<name>reasoning|thoughts?|explanation|steps|final\s+answer|solution|answer)"
    r"[ \t*_]*:[ \t*_]*",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBERED = re.compile(
    r"^[ \t]*(?:(?:step[ \t]*)?\d{1,3}[.):]|step[ \t]*\d{1,3}[ \t]*[-:.)]?|[-*•])"
    r"[ \t]+(?P<text>\S.*)$",
    re.IGNORECASE | re.MULTILINE,
)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return "\n".join(t for t in (_as_text(v) for v in value) if t)
    if isinstance(value, dict):
        for key in ("text", "description", "content", "step", "value"):
            if key in value:
                return _as_text(value[key])
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


_STEP_NUMBER = re.compile(r"^\s*(?:step\s*)?\d{1,3}\s*[.):]\s+|^\s*step\s*\d{1,3}\s*[-:]?\s+", re.I)


def strip_step_number(step: str) -> str:
    """A step without the number a model put in front of it ("1. Add" -> "Add").

    Steps are numbered when shown; a model that numbered them itself would read "1. 1. Add".
    """
    return _STEP_NUMBER.sub("", step, count=1).strip()


def _as_steps(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        items = [_as_text(v) for v in value]
    elif isinstance(value, dict):
        items = [_as_text(v) for v in value.values()]
    else:
        text = _as_text(value)
        numbered = [m.group("text").strip() for m in _NUMBERED.finditer(text)]
        items = numbered or [line.strip() for line in text.splitlines() if line.strip()]
    return [s for s in (strip_step_number(t) for t in items) if s]


def section_of(key: str) -> str | None:
    """Which part of a chain a JSON key holds: "steps", "reasoning", "solution" or ``None``."""
    name = str(key).strip().lower()
    for section, keys in (
        ("steps", _STEP_KEYS),
        ("reasoning", _REASONING_KEYS),
        ("solution", _SOLUTION_KEYS),
    ):
        if name in keys:
            return section
    return None


def _pick(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _from_json_object(data: dict[str, Any]) -> ChainResult | None:
    solution = _pick(data, _SOLUTION_KEYS)
    reasoning = _pick(data, _REASONING_KEYS)
    steps = _pick(data, _STEP_KEYS)
    if solution is None and reasoning is None and steps is None:
        return None
    return ChainResult(
        reasoning=_as_text(reasoning), solution=_as_text(solution), steps=_as_steps(steps)
    )


def _json_candidates(text: str) -> list[str]:
    """Places JSON might be: fenced blocks first (the model's own framing), then the raw text."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    candidates.append(text)
    return candidates


def _decode_first_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``, ignoring anything before or after it."""
    # strict=False: grammar-constrained decoding can put a raw newline inside a string.
    decoder = json.JSONDecoder(strict=False)
    start = text.find("{")
    tries = 0
    while start != -1 and tries < _MAX_JSON_STARTS:
        tries += 1
        try:
            value, _end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


# A JSON string literal, closed or cut off by the end of the text.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\Z)', re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f]")


def _escape_controls(text: str) -> str:
    """Raw control characters inside JSON strings escaped (what ``strict=False`` tolerates)."""

    def escape(match: re.Match[str]) -> str:
        return _CONTROL.sub(lambda c: f"\\u{ord(c.group()):04x}", match.group())

    return _STRING.sub(escape, text)


def decode_partial_object(text: str, *, trailing_strings: bool = True) -> dict[str, Any] | None:
    """The JSON object that starts at the first ``{`` of ``text``, even if it is cut off.

    A reply cut by the length limit ends inside the object: what was complete is kept (and,
    with ``trailing_strings``, the string that was being written when it was cut). Raw
    newlines inside strings are accepted. Anything after a complete object is ignored.

    Returns:
        The object's keys and values, or ``None`` when no object starts in ``text``.
    """
    start = text.find("{")
    if start == -1:
        return None
    try:
        value = from_json(
            _escape_controls(text[start:]),
            allow_partial="trailing-strings" if trailing_strings else "on",
        )
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _from_prose(text: str) -> ChainResult:
    sections: dict[str, str] = {}
    matches = list(_MARKER.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        name = re.sub(r"\s+", " ", match.group("name").lower())
        name = {"thought": "reasoning", "thoughts": "reasoning", "explanation": "reasoning"}.get(
            name, name
        )
        if name in ("final answer", "answer"):
            name = "solution"
        body = text[match.end() : end].strip()
        # The last marker of a kind wins: models restate "Answer:" at the very end.
        if body or name not in sections:
            sections[name] = body
    preamble = text[: matches[0].start()].strip() if matches else text.strip()

    steps_source = sections.get("steps") or sections.get("reasoning") or preamble
    steps = [m.group("text").strip() for m in _NUMBERED.finditer(steps_source)]

    solution = sections.get("solution", "")
    if not solution and not matches:
        # No markers at all: the last paragraph is the conclusion, the rest the reasoning.
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        if len(paragraphs) > 1:
            solution = paragraphs[-1]
            preamble = "\n\n".join(paragraphs[:-1])
        elif paragraphs:
            lines = [line.strip() for line in paragraphs[0].splitlines() if line.strip()]
            solution = lines[-1] if lines else ""
            preamble = "\n".join(lines[:-1])
    reasoning = sections.get("reasoning") or preamble or sections.get("steps", "")
    return ChainResult(reasoning=reasoning, solution=solution, steps=steps)


def parse_chain(text: str) -> ChainResult:
    """Read a model's chain-of-thought answer, however it was written. Never raises.

    Tried in order: JSON (in a code fence, or anywhere in the text with junk around it) with
    ``steps``/``reasoning``/``solution`` keys (and common synonyms such as ``answer``); then prose
    with "Reasoning:", "Solution:", "Answer:" or "Final answer:" markers and numbered steps; then
    the last paragraph as the solution and the rest as reasoning.

    Args:
        text: The model's whole reply.

    Returns:
        What could be read; fields the reply did not contain are empty.
    """
    if not isinstance(text, str):
        return ChainResult()
    for candidate in _json_candidates(text):
        data = _decode_first_object(candidate)
        if data is not None:
            parsed = _from_json_object(data)
            if parsed is not None:
                return parsed
    # A reply cut off inside its JSON (the length limit): keep what it had written.
    cut = decode_partial_object(_unfenced(text))
    if cut:
        parsed = _from_json_object(cut)
        if parsed is not None:
            return parsed
    return _from_prose(text)


def _unfenced(text: str) -> str:
    """The text after an opening code fence that was never closed (or the text itself)."""
    match = re.match(r"\s*```[ \t]*(?:json|JSON)?[ \t]*\n?", text)
    return text[match.end() :] if match else text
