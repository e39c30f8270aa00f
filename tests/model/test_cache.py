"""The response cache: keys, determinism, bounds and counters."""

from __future__ import annotations

import pytest

from bot.model.cache import ResponseCache, is_deterministic, request_key
from bot.model.port import ChatRequest
from bot.types import Message, Outcome, Response, Role, ToolCall


def request(
    text: str = "hi",
    *,
    temperature: float = 0.0,
    seed: int | None = None,
    model: str = "llama3.2",
    images: tuple[bytes, ...] = (),
    tools: tuple[dict[str, object], ...] = (),
) -> ChatRequest:
    options: dict[str, object] = {"temperature": temperature}
    if seed is not None:
        options["seed"] = seed
    return ChatRequest(
        model=model,
        messages=[Message(role=Role.USER, content=text, images=images)],
        options=options,
        tools=tools,
    )


def test_deterministic_means_temperature_zero_or_a_seed() -> None:
    assert is_deterministic(request(temperature=0.0))
    assert is_deterministic(request(temperature=0.7, seed=42))
    assert not is_deterministic(request(temperature=0.7))
    assert not is_deterministic(ChatRequest(model="m", messages=[]))


def test_key_changes_with_everything_that_shapes_the_reply() -> None:
    base = request()
    assert request_key(base) == request_key(request())
    variants = [
        request("other"),
        request(model="qwen3"),
        request(temperature=0.0, seed=1),
        request(images=(b"png-bytes",)),
        request(tools=({"type": "function", "function": {"name": "x"}},)),
        ChatRequest(model="llama3.2", messages=base.messages, options=base.options, think=True),
        ChatRequest(
            model="llama3.2",
            messages=base.messages,
            options=base.options,
            format={"type": "object"},
        ),
        ChatRequest(
            model="llama3.2",
            messages=[
                Message(role=Role.ASSISTANT, content="", tool_calls=(ToolCall(name="t"),)),
            ],
            options=base.options,
        ),
    ]
    keys = {request_key(v) for v in variants}
    assert request_key(base) not in keys
    assert len(keys) == len(variants)


def test_key_is_independent_of_option_order() -> None:
    a = ChatRequest(model="m", messages=[], options={"temperature": 0, "top_p": 0.5})
    b = ChatRequest(model="m", messages=[], options={"top_p": 0.5, "temperature": 0})
    assert request_key(a) == request_key(b)


def test_deterministic_reply_is_served_from_cache_and_marked_cached() -> None:
    cache = ResponseCache()
    assert cache.get(request()) is None
    cache.put(request(), Response(content="hello", model_name="llama3.2"))
    hit = cache.get(request())
    assert hit is not None
    assert hit.content == "hello"
    assert hit.cached
    assert (cache.hits, cache.misses) == (1, 1)


def test_sampled_reply_is_not_cached_unless_asked() -> None:
    cache = ResponseCache()
    cache.put(request(temperature=0.7), Response(content="hello"))
    assert cache.get(request(temperature=0.7)) is None
    assert len(cache) == 0
    assert (cache.hits, cache.misses) == (0, 0)

    everything = ResponseCache(cache_nondeterministic=True)
    everything.put(request(temperature=0.7), Response(content="hello"))
    assert everything.get(request(temperature=0.7)) is not None


@pytest.mark.parametrize("outcome", [Outcome.STOPPED, Outcome.INTERRUPTED, Outcome.ERROR])
def test_incomplete_replies_are_never_cached(outcome: Outcome) -> None:
    cache = ResponseCache()
    cache.put(request(), Response(content="hal", outcome=outcome))
    assert cache.get(request()) is None


def test_cache_is_bounded_by_size() -> None:
    cache = ResponseCache(max_entries=2)
    for text in ("a", "b", "c"):
        cache.put(request(text), Response(content=text))
    assert len(cache) == 2
    assert cache.get(request("a")) is None
    assert cache.get(request("c")) is not None


def test_entries_expire_after_ttl() -> None:
    now = [1000.0]
    cache = ResponseCache(ttl_seconds=60, timer=lambda: now[0])
    cache.put(request(), Response(content="hello"))
    now[0] += 59
    assert cache.get(request()) is not None
    now[0] += 2
    assert cache.get(request()) is None


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        ResponseCache(max_entries=0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        ResponseCache(ttl_seconds=0)
