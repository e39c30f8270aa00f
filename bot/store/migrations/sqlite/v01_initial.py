"""v1: sessions, messages, per-scope settings, the audit log and adapter state."""

VERSION = 1
DESCRIPTION = "initial schema"
STATEMENTS: tuple[str, ...] = (
    # thread is '' when the session has none, so the unique index below can hold: SQLite treats
    # NULLs as distinct in unique indexes.
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        platform TEXT NOT NULL,
        room TEXT NOT NULL,
        thread TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
    )
    """,
    # At most one active session per key: the current one. Older ones keep their history.
    """
    CREATE UNIQUE INDEX sessions_active_key ON sessions (platform, room, thread)
        WHERE active = 1
    """,
    # Room statistics sum over every session of a room, active or not.
    "CREATE INDEX sessions_room ON sessions (platform, room)",
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        author_id TEXT,
        author_name TEXT,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        eval_tokens INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL
    )
    """,
    # "The last N messages of a session" is a backwards range scan of this index.
    "CREATE INDEX messages_session ON messages (session_id, id)",
    # Start-up recovery finds the few streaming leftovers without scanning every message.
    "CREATE INDEX messages_streaming ON messages (id) WHERE status = 'streaming'",
    """
    CREATE TABLE settings (
        platform TEXT NOT NULL,
        scope_kind TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (platform, scope_kind, scope_id, key)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        platform TEXT NOT NULL,
        scope_kind TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        key TEXT NOT NULL,
        old_value TEXT NOT NULL,
        new_value TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        actor_name TEXT NOT NULL,
        allowed INTEGER NOT NULL CHECK (allowed IN (0, 1)),
        created_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX audit_scope ON audit (platform, scope_kind, scope_id, id)",
    """
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID
    """,
)
