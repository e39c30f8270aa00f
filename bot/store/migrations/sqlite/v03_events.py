"""v3: platform events already answered, so a redelivered event is not answered twice."""

VERSION = 3
DESCRIPTION = "events (platform event ids claimed for an answer)"
STATEMENTS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        platform TEXT NOT NULL,
        event_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (platform, event_id)
    ) WITHOUT ROWID
    """,
)
