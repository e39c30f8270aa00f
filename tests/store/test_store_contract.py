"""The contract of :class:`bot.store.port.Store`, run against every implementation.

Each case talks to the store only through the protocol. ``make_store`` builds a new, unopened
store over the same backing data each time it is called, so restarts are real: close one
instance, open another, read back. A second implementation joins by adding a param below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import LeaseHeld, StoreError
from bot.store.port import (
    CutReply,
    MessageStatus,
    NewMessage,
    Scope,
    ScopeKind,
    Store,
    StoredMessage,
)
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SqliteStore
from bot.turn import SessionKey
from bot.types import Role

MakeStore = Callable[[], Store]

KEY = SessionKey("discord", "room-1")
THREAD_KEY = SessionKey("discord", "room-1", "thread-9")
ROOM = Scope("discord", ScopeKind.ROOM, "room-1")
SERVER = Scope("discord", ScopeKind.SERVER, "guild-1")


MakeNamedStore = Callable[[str], Store]


def _sqlite(request: pytest.FixtureRequest) -> MakeNamedStore:
    path = request.getfixturevalue("tmp_path") / "data" / "bot.sqlite3"
    return lambda instance: SqliteStore(path, instance=instance)


def _postgres(request: pytest.FixtureRequest) -> MakeNamedStore:
    # A fresh database on the session's server: started only when a PostgreSQL case runs.
    url = request.getfixturevalue("postgres_url")
    return lambda instance: PostgresStore(url, instance=instance)


@pytest.fixture(params=[_sqlite, _postgres], ids=["sqlite", "postgres"])
def make_named_store(request: pytest.FixtureRequest) -> MakeNamedStore:
    """A new, unopened store over the same data each call, for the instance named."""
    factory: Callable[[pytest.FixtureRequest], MakeNamedStore] = request.param
    return factory(request)


@pytest.fixture
def make_store(make_named_store: MakeNamedStore) -> MakeStore:
    return lambda: make_named_store("main")


@pytest.fixture
async def store(make_store: MakeStore) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def _reopened(make_store: MakeStore) -> Store:
    again = make_store()
    await again.open()
    return again


def user(text: str, status: MessageStatus = MessageStatus.COMPLETE) -> NewMessage:
    return NewMessage(Role.USER, text, author_id="u1", author_name="Alice", status=status)


def assistant(text: str, status: MessageStatus = MessageStatus.COMPLETE) -> NewMessage:
    return NewMessage(Role.ASSISTANT, text, status=status)


def contents(messages: list[StoredMessage]) -> list[str]:
    return [m.content for m in messages]


# Sessions


async def test_session_id_is_stable_for_a_key_and_distinct_per_thread(store: Store) -> None:
    first = await store.session_id(KEY)
    assert await store.session_id(KEY) == first
    assert await store.session_id(THREAD_KEY) != first
    assert await store.session_id(SessionKey("matrix", "room-1")) != first


async def test_reset_starts_a_fresh_session_and_keeps_the_old_history(store: Store) -> None:
    old = await store.session_id(KEY)
    await store.append(old, user("remember me"))
    new = await store.reset_session(KEY)
    assert new != old
    assert await store.session_id(KEY) == new
    assert await store.recent_messages(new, 10) == []
    assert contents(await store.recent_messages(old, 10)) == ["remember me"]


async def test_reset_of_a_place_starts_its_conversations_afresh(store: Store) -> None:
    room = SessionKey("discord", "chan-9")
    chain, thread = SessionKey("discord", "chan-9", "root-1"), SessionKey("discord", "chan-9", "t")
    elsewhere = SessionKey("discord", "chan-10", "root-1")
    old = {k: await store.session_id(k) for k in (room, chain, thread, elsewhere)}
    assert await store.reset_place(thread) == 1  # a thread: that conversation only
    assert await store.session_id(thread) != old[thread]
    assert await store.session_id(chain) == old[chain]
    assert await store.reset_place(room) == 3  # a room: its own, its chains and threads
    assert await store.session_id(room) != old[room]
    assert await store.session_id(chain) != old[chain]
    assert await store.session_id(elsewhere) == old[elsewhere]


async def test_reset_of_a_key_without_a_session_creates_one(store: Store) -> None:
    created = await store.reset_session(THREAD_KEY)
    assert await store.session_id(THREAD_KEY) == created


async def test_history_settings_audit_and_state_survive_a_restart(make_store: MakeStore) -> None:
    first = await _reopened(make_store)
    try:
        session = await first.session_id(KEY)
        await first.append(session, user("hello"))
        await first.append(session, assistant("hi there"))
        await first.set_setting(ROOM, "model", "llama3.2:latest")
        await first.audit(
            ROOM, "model", None, "llama3.2:latest", actor_id="u1", actor_name="Alice", allowed=True
        )
        await first.set_state("matrix.next_batch", "s123_456")
    finally:
        await first.close()

    second = await _reopened(make_store)
    try:
        assert await second.session_id(KEY) == session
        history = await second.recent_messages(session, 10)
        assert contents(history) == ["hello", "hi there"]
        assert [m.role for m in history] == [Role.USER, Role.ASSISTANT]
        assert history[0].author_name == "Alice"
        assert await second.get_settings(ROOM) == {"model": "llama3.2:latest"}
        [entry] = await second.audit_log(ROOM)
        assert (entry.key, entry.new_value, entry.actor_name) == (
            "model",
            "llama3.2:latest",
            "Alice",
        )
        assert await second.get_state("matrix.next_batch") == "s123_456"
    finally:
        await second.close()


# Messages and context


async def test_append_stores_every_field(store: Store) -> None:
    session = await store.session_id(KEY)
    message_id = await store.append(
        session,
        NewMessage(
            Role.ASSISTANT,
            "answer",
            author_id="bot",
            author_name="Ollabot",
            prompt_tokens=12,
            eval_tokens=34,
            status=MessageStatus.STOPPED,
            duration=1.5,
        ),
    )
    [stored] = await store.recent_messages(session, 1)
    assert stored.id == message_id
    assert stored.session_id == session
    assert (stored.role, stored.content, stored.status) == (
        Role.ASSISTANT,
        "answer",
        MessageStatus.STOPPED,
    )
    assert (stored.author_id, stored.author_name) == ("bot", "Ollabot")
    assert (stored.prompt_tokens, stored.eval_tokens, stored.duration) == (12, 34, 1.5)
    assert stored.created_at.tzinfo is not None


async def test_recent_messages_are_the_last_n_oldest_first(store: Store) -> None:
    session = await store.session_id(KEY)
    other = await store.session_id(THREAD_KEY)
    for i in range(6):
        await store.append(session, user(f"m{i}"))
        await store.append(other, user(f"other{i}"))
    assert contents(await store.recent_messages(session, 3)) == ["m3", "m4", "m5"]
    assert contents(await store.recent_messages(session, 100)) == [f"m{i}" for i in range(6)]
    assert await store.recent_messages(session, 0) == []


async def test_context_takes_the_newest_messages_within_budget_oldest_first(
    store: Store,
) -> None:
    session = await store.session_id(KEY)
    for text in ("a" * 10, "b" * 10, "c" * 10, "d" * 10):
        await store.append(session, user(text))
    assert contents(await store.context_messages(session, 30)) == ["b" * 10, "c" * 10, "d" * 10]
    assert contents(await store.context_messages(session, 29)) == ["c" * 10, "d" * 10]
    assert len(await store.context_messages(session, 1000)) == 4
    assert await store.context_messages(session, 9) == []


async def test_context_stops_at_the_first_message_over_budget(store: Store) -> None:
    # An older short message must not be pulled in past a long one: context is a tail.
    session = await store.session_id(KEY)
    await store.append(session, user("old"))
    await store.append(session, assistant("x" * 100))
    await store.append(session, user("new"))
    assert contents(await store.context_messages(session, 50)) == ["new"]


async def test_context_excludes_error_and_streaming_messages(store: Store) -> None:
    session = await store.session_id(KEY)
    await store.append(session, user("question"))
    await store.append(session, assistant("boom", MessageStatus.ERROR))
    await store.append(session, assistant("half", MessageStatus.STREAMING))
    await store.append(session, assistant("partial", MessageStatus.STOPPED))
    await store.append(session, assistant("cut", MessageStatus.INTERRUPTED))
    await store.append(session, user("again"))
    assert contents(await store.context_messages(session, 1000)) == [
        "question",
        "partial",
        "cut",
        "again",
    ]
    # Excluded messages do not use up the budget either.
    assert contents(await store.context_messages(session, 12)) == ["cut", "again"]


async def test_context_of_a_long_session_matches_a_reference_model(store: Store) -> None:
    # Enough messages that an implementation reading in batches must read several.
    rng = random.Random(7)
    session = await store.session_id(KEY)
    await store.append(await store.session_id(THREAD_KEY), user("not this session"))
    statuses = [MessageStatus.COMPLETE] * 8 + [MessageStatus.ERROR, MessageStatus.STREAMING]
    written: list[tuple[str, MessageStatus]] = []
    for i in range(400):
        text = f"{i}:" + "z" * rng.randint(0, 60)
        status = rng.choice(statuses)
        await store.append(session, user(text, status))
        written.append((text, status))
    usable = [text for text, status in written if status not in _NOT_CONTEXT]
    for budget in (0, 1, 50, 700, 5_000, 12_345, 100_000):
        assert contents(await store.context_messages(session, budget)) == _tail(usable, budget)


_NOT_CONTEXT = {MessageStatus.ERROR, MessageStatus.STREAMING}


def _tail(texts: list[str], budget: int) -> list[str]:
    picked: list[str] = []
    for text in reversed(texts):
        budget -= len(text)
        if budget < 0:
            break
        picked.append(text)
    return picked[::-1]


async def test_update_message_sets_final_text_and_outcome(store: Store) -> None:
    session = await store.session_id(KEY)
    message_id = await store.append(session, assistant("", MessageStatus.STREAMING))
    await store.update_message(
        message_id,
        content="the whole answer",
        status=MessageStatus.COMPLETE,
        eval_tokens=40,
        prompt_tokens=8,
        duration=2.0,
    )
    [stored] = await store.recent_messages(session, 1)
    assert (stored.content, stored.status) == ("the whole answer", MessageStatus.COMPLETE)
    assert (stored.eval_tokens, stored.prompt_tokens, stored.duration) == (40, 8, 2.0)


async def test_update_of_an_unknown_message_raises_store_error(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.update_message(999_999, content="x", status=MessageStatus.COMPLETE)


async def test_mark_interrupted_turns_streaming_leftovers_into_interrupted(
    make_store: MakeStore,
) -> None:
    first = await _reopened(make_store)
    try:
        session = await first.session_id(KEY)
        await first.append(session, user("question"))
        await first.append(session, assistant("half an ans", MessageStatus.STREAMING))
        await first.append(
            await first.session_id(THREAD_KEY), assistant("other", MessageStatus.STREAMING)
        )
    finally:
        await first.close()  # as if the bot died while streaming

    second = await _reopened(make_store)
    try:
        assert [cut.key for cut in await second.mark_interrupted()] == [KEY, THREAD_KEY]
        assert await second.mark_interrupted() == []
        statuses = [m.status for m in await second.recent_messages(session, 10)]
        assert statuses == [MessageStatus.COMPLETE, MessageStatus.INTERRUPTED]
        assert contents(await second.context_messages(session, 100)) == [
            "question",
            "half an ans",
        ]
    finally:
        await second.close()


async def test_refs_of_a_streaming_reply_come_back_with_it_when_a_crash_cut_it(
    make_store: MakeStore,
) -> None:
    first = await _reopened(make_store)
    try:
        session = await first.session_id(THREAD_KEY)
        cut_id = await first.append(session, assistant("", MessageStatus.STREAMING))
        await first.update_message(
            cut_id, content="w0 ", status=MessageStatus.STREAMING, refs=["c1/m1"]
        )
        # A save without refs keeps the ones stored; a new list replaces them.
        await first.update_message(cut_id, content="w0 w1 ", status=MessageStatus.STREAMING)
        await first.update_message(
            cut_id, content="w0 w1 w2 ", status=MessageStatus.STREAMING, refs=["c1/m1", "c1/m2"]
        )
        await first.update_message(cut_id, content="w0 w1 w2 w3", status=MessageStatus.STREAMING)
        finished = await first.append(session, assistant("", MessageStatus.STREAMING))
        await first.update_message(
            finished, content="whole", status=MessageStatus.COMPLETE, refs=["c1/m3"]
        )
        no_refs = await first.append(
            await first.session_id(KEY), assistant("nothing sent", MessageStatus.STREAMING)
        )
    finally:
        await first.close()

    second = await _reopened(make_store)
    try:
        assert await second.mark_interrupted() == [
            CutReply(cut_id, THREAD_KEY, "w0 w1 w2 w3", ("c1/m1", "c1/m2")),
            CutReply(no_refs, KEY, "nothing sent", ()),
        ]
    finally:
        await second.close()


async def test_claim_event_succeeds_once_also_across_restarts(make_store: MakeStore) -> None:
    first = await _reopened(make_store)
    try:
        assert await first.claim_event("matrix", "$event1") is True
        assert await first.claim_event("matrix", "$event1") is False
        assert await first.claim_event("discord", "$event1") is True
    finally:
        await first.close()
    second = await _reopened(make_store)
    try:
        assert await second.claim_event("matrix", "$event1") is False
        assert await second.claim_event("matrix", "$event2") is True
    finally:
        await second.close()


async def test_prune_deletes_old_claims_and_old_state_under_the_given_prefixes_only(
    make_store: MakeStore,
) -> None:
    store = await _reopened(make_store)
    try:
        assert await store.claim_event("matrix", "$old")
        for key in ("discord:chain:1", "discord:chain:2", "matrix:@bot:sync", "other:1"):
            await store.set_state(key, "v")
        # Nothing is older than a day ago: nothing goes.
        assert await store.prune(datetime.now(UTC) - timedelta(days=1), ["discord:chain:"]) == 0
        later = datetime.now(UTC) + timedelta(seconds=1)
        assert await store.prune(later, ["discord:chain:", "other:"]) == 4
        assert await store.claim_event("matrix", "$old") is True  # forgotten
        assert await store.get_state("discord:chain:1") is None
        assert await store.get_state("other:1") is None
        assert await store.get_state("matrix:@bot:sync") == "v"  # not under a prefix: kept
    finally:
        await store.close()


async def test_a_released_claim_can_be_claimed_again(make_store: MakeStore) -> None:
    store = await _reopened(make_store)
    try:
        assert await store.claim_event("matrix", "$event1") is True
        await store.release_event("matrix", "$event1")
        await store.release_event("matrix", "$never-claimed")  # a no-op, not an error
        assert await store.claim_event("matrix", "$event1") is True
        assert await store.claim_event("matrix", "$event1") is False
    finally:
        await store.close()


# Several processes on one database (each store below stands for one process)


async def _opened(make_named_store: MakeNamedStore, instance: str) -> Store:
    store = make_named_store(instance)
    await store.open()
    return store


async def test_a_reply_another_live_store_is_writing_is_never_marked(
    make_named_store: MakeNamedStore,
) -> None:
    # Two processes given the same instance name by mistake: the restarted one must not cut
    # the reply the other is still writing.
    writer = await _opened(make_named_store, "shards-0")
    restarted = await _opened(make_named_store, "shards-0")
    try:
        session = await writer.session_id(KEY)
        live = await writer.append(session, assistant("still wri", MessageStatus.STREAMING))
        assert await restarted.mark_interrupted() == []
        await writer.update_message(live, content="still writing", status=MessageStatus.COMPLETE)
        [stored] = await restarted.recent_messages(session, 1)
        assert (stored.content, stored.status) == ("still writing", MessageStatus.COMPLETE)
    finally:
        await writer.close()
        await restarted.close()


async def test_a_restarted_instance_marks_only_its_own_cut_replies(
    make_named_store: MakeNamedStore,
) -> None:
    crashed_a = await _opened(make_named_store, "shards-0")
    crashed_b = await _opened(make_named_store, "shards-1")
    try:
        mine = await crashed_a.append(
            await crashed_a.session_id(KEY), assistant("a's", MessageStatus.STREAMING)
        )
        await crashed_b.append(
            await crashed_b.session_id(THREAD_KEY), assistant("b's", MessageStatus.STREAMING)
        )
    finally:
        await crashed_a.close()
        await crashed_b.close()
    again_a = await _opened(make_named_store, "shards-0")
    try:
        assert await again_a.mark_interrupted() == [CutReply(mine, KEY, "a's", ())]
    finally:
        await again_a.close()
    again_b = await _opened(make_named_store, "shards-1")
    try:
        assert [cut.content for cut in await again_b.mark_interrupted()] == ["b's"]
    finally:
        await again_b.close()


async def test_a_lease_is_refused_while_its_holder_lives_and_taken_over_after(
    make_named_store: MakeNamedStore,
) -> None:
    holder = await _opened(make_named_store, "matrix")
    second = await _opened(make_named_store, "other")
    try:
        await holder.acquire_lease("matrix-sync:@bot:example.org")
        await holder.acquire_lease("matrix-sync:@bot:example.org")  # again: already its own
        with pytest.raises(LeaseHeld) as refused:
            await second.acquire_lease("matrix-sync:@bot:example.org")
        assert (refused.value.instance, refused.value.pid) == ("matrix", os.getpid())
        assert "matrix-sync:@bot:example.org" in refused.value.user_message
        await second.acquire_lease("matrix-sync:@other:example.org")  # another account
        await holder.release_lease("matrix-sync:@bot:example.org")
        await second.acquire_lease("matrix-sync:@bot:example.org")
        with pytest.raises(LeaseHeld):
            await holder.acquire_lease("matrix-sync:@bot:example.org")
    finally:
        await second.close()  # ends its hold: its process is as good as gone
    try:
        await holder.acquire_lease("matrix-sync:@bot:example.org")
    finally:
        await holder.close()


async def test_concurrent_claims_from_several_stores_succeed_once_each(
    make_named_store: MakeNamedStore,
) -> None:
    stores = [await _opened(make_named_store, f"p{i}") for i in range(3)]
    try:
        events = [f"$e{i}" for i in range(30)]
        claims = await asyncio.gather(
            *(store.claim_event("discord", e) for e in events for store in stores)
        )
        assert sum(claims) == len(events)
    finally:
        for store in stores:
            await store.close()


async def test_a_setting_changed_through_one_store_is_in_force_in_another(
    make_named_store: MakeNamedStore,
) -> None:
    one = await _opened(make_named_store, "p1")
    other = await _opened(make_named_store, "p2")
    try:
        assert await other.get_settings(ROOM) == {}
        await one.set_setting(ROOM, "model", "qwen3:8b")
        await one.audit(
            ROOM, "model", None, "qwen3:8b", actor_id="m", actor_name="Mod", allowed=True
        )
        assert await other.get_settings(ROOM) == {"model": "qwen3:8b"}
        assert [e.new_value for e in await other.audit_log(ROOM)] == ["qwen3:8b"]
        assert await other.set_setting(ROOM, "model", None) == "qwen3:8b"
        assert await one.get_settings(ROOM) == {}
    finally:
        await one.close()
        await other.close()


# Settings and audit


async def test_set_setting_returns_the_old_value_and_none_clears(store: Store) -> None:
    assert await store.set_setting(ROOM, "model", "llama3.2") is None
    assert await store.set_setting(ROOM, "model", "qwen3") == "llama3.2"
    options = {"temperature": 0.2, "stop": ["###"]}
    assert await store.set_setting(ROOM, "options", options) is None
    assert await store.get_settings(ROOM) == {"model": "qwen3", "options": options}
    assert await store.set_setting(ROOM, "model", None) == "qwen3"
    assert await store.get_settings(ROOM) == {"options": options}
    assert await store.set_setting(ROOM, "model", None) is None


async def test_settings_belong_to_exactly_one_scope(store: Store) -> None:
    await store.set_setting(ROOM, "mode", "chat")
    await store.set_setting(SERVER, "mode", "code")
    await store.set_setting(Scope("matrix", ScopeKind.ROOM, "room-1"), "mode", "think")
    assert await store.get_settings(ROOM) == {"mode": "chat"}
    assert await store.get_settings(SERVER) == {"mode": "code"}
    assert await store.get_settings(Scope("discord", ScopeKind.THREAD, "room-1")) == {}


async def test_audit_log_lists_changes_and_refusals_newest_first(store: Store) -> None:
    await store.audit(ROOM, "model", None, "a", actor_id="u1", actor_name="Alice", allowed=True)
    await store.audit(ROOM, "system", "x", {"y": 1}, actor_id="u2", actor_name="Bob", allowed=False)
    await store.audit(SERVER, "mode", None, "chat", actor_id="u1", actor_name="Alice", allowed=True)

    in_room = await store.audit_log(ROOM)
    assert [(e.key, e.actor_name, e.allowed) for e in in_room] == [
        ("system", "Bob", False),
        ("model", "Alice", True),
    ]
    assert (in_room[0].old_value, in_room[0].new_value, in_room[0].scope) == ("x", {"y": 1}, ROOM)
    assert in_room[0].created_at.tzinfo is not None
    everywhere = await store.audit_log()
    assert [e.key for e in everywhere] == ["mode", "system", "model"]
    assert [e.key for e in await store.audit_log(limit=1)] == ["mode"]


# Statistics and adapter state


async def test_channel_stats_cover_every_session_of_the_room(store: Store) -> None:
    first = await store.session_id(KEY)
    await store.append(first, user("q1"))
    await store.append(
        first,
        NewMessage(Role.ASSISTANT, "a1", prompt_tokens=10, eval_tokens=100, duration=2.0),
    )
    thread = await store.session_id(THREAD_KEY)
    await store.append(
        thread,
        NewMessage(Role.ASSISTANT, "a2", prompt_tokens=5, eval_tokens=30, duration=1.0),
    )
    after_reset = await store.reset_session(KEY)
    # No duration (a stopped reply whose tokens the engine counted itself, or one stored by an
    # older release): counted, but not in the speed.
    await store.append(after_reset, NewMessage(Role.ASSISTANT, "a3", eval_tokens=7))
    # A duration but no counters (a stopped reply as older releases stored it): not in the speed.
    await store.append(after_reset, NewMessage(Role.ASSISTANT, "a4", duration=3.0))
    await store.append(
        await store.session_id(SessionKey("discord", "room-2")),
        NewMessage(Role.ASSISTANT, "elsewhere", eval_tokens=999, duration=0.1),
    )

    stats = await store.channel_stats("discord", "room-1")
    assert stats.messages == 5
    assert stats.prompt_tokens == 15
    assert stats.eval_tokens == 137
    assert stats.mean_tokens_per_second == pytest.approx((100 / 2.0 + 30 / 1.0) / 2)


async def test_channel_stats_of_an_empty_room_are_zero(store: Store) -> None:
    stats = await store.channel_stats("discord", "nowhere")
    assert (stats.messages, stats.prompt_tokens, stats.eval_tokens) == (0, 0, 0)
    assert stats.mean_tokens_per_second is None


async def test_state_is_stored_and_replaced(store: Store) -> None:
    assert await store.get_state("discord.commands_hash") is None
    await store.set_state("discord.commands_hash", "abc")
    await store.set_state("discord.commands_hash", "def")
    assert await store.get_state("discord.commands_hash") == "def"


# Concurrency


async def test_concurrent_appends_lose_nothing(store: Store) -> None:
    keys = [SessionKey("discord", f"room-{n % 5}") for n in range(20)]

    async def writer(n: int) -> list[int]:
        session = await store.session_id(keys[n])
        return [await store.append(session, user(f"{n}:{i}")) for i in range(25)]

    ids = await asyncio.gather(*(writer(n) for n in range(20)))
    assert len({i for batch in ids for i in batch}) == 20 * 25
    for room in range(5):
        session = await store.session_id(SessionKey("discord", f"room-{room}"))
        stored = contents(await store.recent_messages(session, 1000))
        assert len(stored) == 4 * 25
        for n in range(room, 20, 5):
            # Each writer's messages are all there, in the order it wrote them.
            assert [t for t in stored if t.startswith(f"{n}:")] == [f"{n}:{i}" for i in range(25)]


async def test_concurrent_first_lookups_create_one_session(store: Store) -> None:
    ids = await asyncio.gather(*(store.session_id(KEY) for _ in range(20)))
    assert len(set(ids)) == 1


async def test_concurrent_resets_leave_exactly_one_current_session(store: Store) -> None:
    created = await asyncio.gather(*(store.reset_session(KEY) for _ in range(10)))
    assert len(set(created)) == 10
    assert await store.session_id(KEY) in created
    # The current one is the newest: every message appended now lands in the same session.
    current = await asyncio.gather(*(store.session_id(KEY) for _ in range(5)))
    assert len(set(current)) == 1


async def test_a_cancelled_reset_leaves_the_store_consistent(store: Store) -> None:
    # Cancel at every point a reset can be waiting at; whatever was done is kept or undone whole.
    session = await store.session_id(KEY)
    for ticks in range(12):
        task = asyncio.ensure_future(store.reset_session(KEY))
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            session = await task
        current = await store.session_id(KEY)
        assert current >= session
        session = current
        await store.append(session, user(f"after cancel {ticks}"))
        assert await store.recent_messages(session, 1) != []
    assert len({await store.session_id(KEY) for _ in range(3)}) == 1
