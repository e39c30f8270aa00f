"""Settings, audit log, statistics and adapter state of :class:`bot.store.postgres.PostgresStore`.

The part of the store's queries that is about places rather than conversations. Nothing here is
cached: every read goes to the database, so what one process writes the others read next.
"""

from __future__ import annotations

import json
from typing import Any

from bot.store.port import AuditEntry, ChannelStats, Scope
from bot.store.postgres_db import PostgresDatabase, now
from bot.store.rows import (
    AUDIT_COLUMNS,
    as_stored,
    decode_value,
    encode_value,
    scope_params,
    to_audit_entries,
    to_channel_stats,
    to_settings,
)
from bot.types import Role

__all__ = ["PostgresSettings"]


class PostgresSettings(PostgresDatabase):
    """The settings, audit, statistics and state queries on one PostgreSQL database."""

    # Settings and audit

    async def get_settings(self, scope: Scope) -> dict[str, Any]:
        """Every setting stored at exactly ``scope`` (no cascade), JSON-decoded."""
        async with self.op("read settings") as conn:
            rows = await conn.fetch(
                "SELECT key, value FROM settings"
                " WHERE platform = $1 AND scope_kind = $2 AND scope_id = $3",
                *scope_params(scope),
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
        match = "platform = $1 AND scope_kind = $2 AND scope_id = $3 AND key = $4"
        async with self.transaction("write setting") as conn:
            old = await conn.fetchval(
                f"SELECT value FROM settings WHERE {match} FOR UPDATE", *where
            )
            if encoded is None:
                await conn.execute(f"DELETE FROM settings WHERE {match}", *where)
            else:
                await conn.execute(
                    "INSERT INTO settings (platform, scope_kind, scope_id, key, value, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6)"
                    " ON CONFLICT (platform, scope_kind, scope_id, key)"
                    " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    *where,
                    encoded,
                    now(),
                )
        return decode_value(old)

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
        async with self.op("write audit") as conn:
            await conn.execute(
                "INSERT INTO audit (platform, scope_kind, scope_id, key, old_value, new_value,"
                " actor_id, actor_name, allowed, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                *scope_params(scope),
                key,
                json.dumps(old_value),
                json.dumps(new_value),
                actor_id,
                actor_name,
                allowed,
                now(),
            )

    async def audit_log(self, scope: Scope | None = None, limit: int = 50) -> list[AuditEntry]:
        """The last ``limit`` audit entries, of ``scope`` or of every scope, newest first."""
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit"
        params: tuple[Any, ...] = (limit,)
        if scope is not None:
            sql += " WHERE platform = $2 AND scope_kind = $3 AND scope_id = $4"
            params = (limit, *scope_params(scope))
        async with self.op("read audit") as conn:
            rows = await conn.fetch(sql + " ORDER BY id DESC LIMIT $1", *params)
        return to_audit_entries(rows, as_stored)

    async def channel_stats(self, platform: str, room: str) -> ChannelStats:
        """Messages and tokens of every session of a room, and the mean reply speed.

        The speed averages replies with both counters and a duration, as SQLite's does.
        """
        async with self.op("read stats") as conn:
            row = await conn.fetchrow(
                "SELECT COUNT(*), COALESCE(SUM(m.prompt_tokens), 0),"
                " COALESCE(SUM(m.eval_tokens), 0),"
                " AVG(CASE WHEN m.role = $1 AND m.duration > 0 AND m.eval_tokens > 0"
                " THEN m.eval_tokens / m.duration END)"
                " FROM messages AS m JOIN sessions AS s ON s.id = m.session_id"
                " WHERE s.platform = $2 AND s.room = $3",
                Role.ASSISTANT.value,
                platform,
                room,
            )
        assert row is not None  # an aggregate always has a row
        return to_channel_stats(row)

    # Adapter state

    async def get_state(self, key: str) -> str | None:
        """Adapter state that survives restarts (sync tokens, command hashes)."""
        async with self.op("read state") as conn:
            value = await conn.fetchval("SELECT value FROM state WHERE key = $1", key)
        return None if value is None else str(value)

    async def set_state(self, key: str, value: str) -> None:
        """Store adapter state under ``key``, replacing what was there."""
        async with self.op("write state") as conn:
            await conn.execute(
                "INSERT INTO state (key, value, updated_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                key,
                value,
                now(),
            )
