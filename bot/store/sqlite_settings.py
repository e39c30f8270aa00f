"""Settings, the audit log, statistics and adapter state of :class:`bot.store.sqlite.SqliteStore`.

The part of the store's queries that is about places rather than conversations: per-scope
settings (JSON values), who changed what (the audit log), a room's counters, and the state the
adapters keep across restarts.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.store.port import AuditEntry, ChannelStats, Scope
from bot.store.rows import (
    AUDIT_COLUMNS,
    decode_value,
    encode_value,
    scope_params,
    to_audit_entries,
    to_channel_stats,
    to_settings,
)
from bot.store.sqlite_db import SqliteDatabase, fetch, now, run
from bot.types import Role

__all__ = ["SqliteSettings"]


class SqliteSettings(SqliteDatabase):
    """The settings, audit, statistics and state queries on one SQLite file."""

    # Settings and audit

    async def get_settings(self, scope: Scope) -> dict[str, Any]:
        """Every setting stored at exactly ``scope`` (no cascade), JSON-decoded."""
        async with self._op("read settings") as db:
            rows = await fetch(
                db,
                "SELECT key, value FROM settings"
                " WHERE platform = ? AND scope_kind = ? AND scope_id = ?",
                scope_params(scope),
            )
        return to_settings(rows)

    async def set_setting(self, scope: Scope, key: str, value: Any) -> Any:
        """Set (or, with ``None``, clear) one setting; returns the old value (``None`` if unset).

        Raises:
            TypeError: ``value`` cannot be stored as JSON.
            StoreError: The database failed.
        """
        encoded = encode_value(value)
        where = (*scope_params(scope), key)
        async with self._transaction("write setting") as db:
            rows = await fetch(
                db,
                "SELECT value FROM settings"
                " WHERE platform = ? AND scope_kind = ? AND scope_id = ? AND key = ?",
                where,
            )
            if encoded is None:
                await run(
                    db,
                    "DELETE FROM settings"
                    " WHERE platform = ? AND scope_kind = ? AND scope_id = ? AND key = ?",
                    where,
                )
            else:
                await run(
                    db,
                    "INSERT INTO settings (platform, scope_kind, scope_id, key, value, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, scope_kind, scope_id, key)"
                    " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    (*where, encoded, now()),
                )
        return decode_value(rows[0][0] if rows else None)

    async def audit(
        self,
        scope: Scope,
        key: str,
        old_value: Any,
        new_value: Any,
        *,
        actor_id: str,
        actor_name: str,
        allowed: bool,
    ) -> None:
        """Log a settings change, or a refused attempt (``allowed=False``)."""
        async with self._op("write audit") as db:
            await run(
                db,
                "INSERT INTO audit (platform, scope_kind, scope_id, key, old_value, new_value,"
                " actor_id, actor_name, allowed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *scope_params(scope),
                    key,
                    json.dumps(old_value),
                    json.dumps(new_value),
                    actor_id,
                    actor_name,
                    int(allowed),
                    now(),
                ),
            )

    async def audit_log(self, scope: Scope | None = None, limit: int = 50) -> list[AuditEntry]:
        """The last ``limit`` audit entries, of ``scope`` or of every scope, newest first."""
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit"
        params: tuple[Any, ...] = (limit,)
        if scope is not None:
            sql += " WHERE platform = ? AND scope_kind = ? AND scope_id = ?"
            params = (*scope_params(scope), limit)
        async with self._op("read audit") as db:
            rows = await fetch(db, sql + " ORDER BY id DESC LIMIT ?", params)
        return to_audit_entries(rows, datetime.fromisoformat)

    async def channel_stats(self, platform: str, room: str) -> ChannelStats:
        """Messages and tokens of every session of a room, and the mean reply speed.

        ``mean_tokens_per_second`` averages ``eval_tokens / duration`` over the assistant
        messages that have both counters and a duration (the engine stores no duration for a
        reply whose count it estimated; older releases stored stopped replies with a duration
        and 0 tokens); ``None`` when there are none.
        """
        async with self._op("read stats") as db:
            rows = await fetch(
                db,
                "SELECT COUNT(*), COALESCE(SUM(m.prompt_tokens), 0),"
                " COALESCE(SUM(m.eval_tokens), 0),"
                " AVG(CASE WHEN m.role = ? AND m.duration > 0 AND m.eval_tokens > 0"
                " THEN m.eval_tokens / m.duration END)"
                " FROM messages AS m JOIN sessions AS s ON s.id = m.session_id"
                " WHERE s.platform = ? AND s.room = ?",
                (Role.ASSISTANT.value, platform, room),
            )
        return to_channel_stats(rows[0])

    # Adapter state

    async def get_state(self, key: str) -> str | None:
        """Adapter state that survives restarts (sync tokens, command hashes)."""
        async with self._op("read state") as db:
            rows = await fetch(db, "SELECT value FROM state WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_state(self, key: str, value: str) -> None:
        """Store adapter state under ``key``, replacing what was there."""
        async with self._op("write state") as db:
            await run(
                db,
                "INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (key, value, now()),
            )
