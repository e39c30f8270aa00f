"""Functions the model may call: typed async functions with a pydantic argument model.

A :class:`ToolRegistry` offers their schemas to the model and runs the calls it asks for. A call
never raises: whatever goes wrong (unknown tool, bad arguments, timeout, a failing function) comes
back as a short error text the model can read and recover from.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import math
import operator
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, ValidationError

from bot.types import ToolCall

__all__ = [
    "CalculateArgs",
    "CalculationError",
    "CurrentTimeArgs",
    "Tool",
    "ToolRegistry",
    "builtin_tools",
    "calculate",
    "current_time",
    "evaluate_expression",
    "tool",
]

log = logging.getLogger(__name__)

ArgsT = TypeVar("ArgsT", bound=BaseModel)


@dataclass(frozen=True)
class Tool(Generic[ArgsT]):
    """One function the model may call.

    Attributes:
        name: What the model calls it (letters, digits, underscores).
        description: What it does, for the model to decide when to use it.
        args_model: The pydantic model its arguments must fit; its JSON schema is sent to Ollama.
        func: The async function, given the validated arguments; returns text for the model.
    """

    name: str
    description: str
    args_model: type[ArgsT]
    func: Callable[[ArgsT], Awaitable[str]] = field(repr=False)

    def schema(self) -> dict[str, Any]:
        """The tool in Ollama's ``tools`` form."""
        parameters = self.args_model.model_json_schema()
        parameters.pop("title", None)
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters,
            },
        }

    async def invoke(self, arguments: dict[str, Any]) -> str:
        """Validate ``arguments`` and run the function.

        Raises:
            pydantic.ValidationError: The arguments do not fit ``args_model``.
        """
        args = self.args_model.model_validate(arguments)
        return await self.func(args)


def tool(
    name: str, description: str, args_model: type[ArgsT]
) -> Callable[[Callable[[ArgsT], Awaitable[str]]], Tool[ArgsT]]:
    """Decorator that turns an async function into a :class:`Tool`.

    Example::

        class EchoArgs(BaseModel):
            text: str

        @tool("echo", "Repeat the text.", EchoArgs)
        async def echo(args: EchoArgs) -> str:
            return args.text
    """

    def wrap(func: Callable[[ArgsT], Awaitable[str]]) -> Tool[ArgsT]:
        return Tool(name=name, description=description, args_model=args_model, func=func)

    return wrap


def _format_validation_error(err: ValidationError) -> str:
    parts = []
    for item in err.errors(include_url=False):
        where = ".".join(str(p) for p in item.get("loc", ())) or "arguments"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


class ToolRegistry:
    """The tools offered to the model, and the runner of its calls. Implements ``ToolRunnerLike``.

    Args:
        tools: The tools; names must be unique.
        timeout: Seconds a single call may take before it is cancelled.
    """

    def __init__(self, tools: Iterable[Tool[Any]], timeout: float = 10.0) -> None:
        self._tools: dict[str, Tool[Any]] = {}
        for item in tools:
            if item.name in self._tools:
                raise ValueError(f"duplicate tool name: {item.name}")
            self._tools[item.name] = item
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout

    @property
    def names(self) -> list[str]:
        """The tool names, in registration order."""
        return list(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """Every tool in Ollama's ``tools`` form."""
        return [t.schema() for t in self._tools.values()]

    async def run(self, call: ToolCall) -> str:
        """Run one call and return its result, or an error text starting with ``Error:``.

        Never raises (except ``CancelledError`` when the caller itself is cancelled).
        """
        found = self._tools.get(call.name)
        if found is None:
            known = ", ".join(self._tools) or "none"
            return f"Error: unknown tool '{call.name}'. Available tools: {known}."
        try:
            async with asyncio.timeout(self.timeout):
                return await found.invoke(dict(call.arguments))
        except ValidationError as err:
            return f"Error: bad arguments for {call.name}: {_format_validation_error(err)}"
        except TimeoutError:
            return f"Error: {call.name} took longer than {self.timeout:g} s and was stopped."
        except Exception as err:
            # Not hidden: the model reads what failed and can tell the user; the log has the trace.
            log.warning("tool %s failed", call.name, exc_info=True)
            return f"Error: {call.name} failed: {type(err).__name__}: {err}"


# --------------------------------------------------------------------------------------------
# Built-in tools


class CurrentTimeArgs(BaseModel):
    """Arguments of ``current_time``."""

    timezone: str = Field(
        default="UTC", description="IANA time zone name, e.g. 'Europe/Paris' or 'UTC'."
    )


async def _current_time(args: CurrentTimeArgs) -> str:
    try:
        zone = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return (
            f"Error: unknown time zone '{args.timezone}'. "
            "Use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'."
        )
    now = datetime.now(zone)
    return now.strftime(f"%Y-%m-%d %H:%M:%S %Z (UTC%z) {args.timezone}, %A")


current_time: Tool[CurrentTimeArgs] = Tool(
    name="current_time",
    description="Get the current date and time in a time zone.",
    args_model=CurrentTimeArgs,
    func=_current_time,
)


class CalculationError(ValueError):
    """The expression is not plain arithmetic, or it is too big to compute safely."""


MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 1000
# Python refuses to print ints over 4300 digits (~14,280 bits); stay under that.
MAX_RESULT_BITS = 14_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _check_size(value: object) -> float | int:
    if isinstance(value, complex):
        raise CalculationError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_BITS:
        raise CalculationError("the result is too large")
    if not isinstance(value, int | float):
        raise CalculationError("the result is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        # Float overflow gives inf silently; say so rather than answer "inf".
        raise CalculationError("the result is too large")
    return value


def _refuse_oversized(op: ast.operator, left: float | int, right: float | int) -> None:
    """Refuse, before computing it, an operation whose result would be too large.

    Computing first and checking after would block the event loop on the way: ``(9**999)**999``
    takes about 0.3 s to compute before it is refused. Integer sizes are known in advance from
    the operands' bit lengths; floats overflow at once and are checked after.
    """
    if isinstance(op, ast.Pow) and abs(right) > MAX_EXPONENT:
        raise CalculationError(f"exponents above {MAX_EXPONENT} are not allowed")
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    # A non-zero int of bit length b is at least 2**(b - 1).
    if isinstance(op, ast.Pow):
        at_least = (abs(left).bit_length() - 1) * right + 1 if right > 0 else 1
    elif isinstance(op, ast.Mult):
        at_least = abs(left).bit_length() + abs(right).bit_length() - 1
    else:
        return
    if at_least > MAX_RESULT_BITS:
        raise CalculationError("the result is too large")


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculationError(f"only numbers are allowed, not {node.value!r}")
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalculationError(f"unknown name '{node.id}'")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _eval(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        _refuse_oversized(node.op, left, right)
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError as err:
            raise CalculationError("division by zero") from err
        except OverflowError as err:
            raise CalculationError("the result is too large") from err
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise CalculationError("unknown function")
        if node.keywords:
            raise CalculationError("keyword arguments are not allowed")
        args = [_eval(a) for a in node.args]
        try:
            return _check_size(_FUNCTIONS[node.func.id](*args))
        except (ValueError, TypeError, OverflowError) as err:
            raise CalculationError(f"{node.func.id}: {err}") from err
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        raise CalculationError("only + - * / // % ** and unary minus are allowed")
    raise CalculationError(f"'{type(node).__name__}' is not arithmetic")


def evaluate_expression(expression: str) -> float | int:
    """Evaluate arithmetic by walking its syntax tree (never ``eval``).

    Allowed: numbers, ``+ - * / // % **``, unary minus, parentheses, the constants ``pi``, ``e``,
    ``tau`` and the functions sqrt, sin, cos, tan, log, log10, exp, abs, round, floor, ceil.
    ``^`` is read as a power, since that is what people mean by it.

    Raises:
        CalculationError: Anything else, an expression over 200 characters, an exponent above
            1000, division by zero, or a result too large to show.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.replace("^", "**").strip(), mode="eval")
    except SyntaxError as err:
        raise CalculationError("the expression is not valid arithmetic") from err
    return _eval(tree)


class CalculateArgs(BaseModel):
    """Arguments of ``calculate``."""

    expression: str = Field(description="An arithmetic expression, e.g. '(2 + 3) * 4 / sqrt(2)'.")


async def _calculate(args: CalculateArgs) -> str:
    try:
        value = evaluate_expression(args.expression)
    except CalculationError as err:
        return f"Error: cannot calculate '{args.expression}': {err}."
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


calculate: Tool[CalculateArgs] = Tool(
    name="calculate",
    description="Evaluate an arithmetic expression exactly. Use it for any arithmetic.",
    args_model=CalculateArgs,
    func=_calculate,
)


def builtin_tools() -> Sequence[Tool[Any]]:
    """The tools offered when none are chosen: ``current_time`` and ``calculate``."""
    return (current_time, calculate)
