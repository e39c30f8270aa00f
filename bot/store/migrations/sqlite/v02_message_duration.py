"""v2: how long each reply took, so a room's tokens per second can be reported."""

VERSION = 2
DESCRIPTION = "messages.duration (seconds a reply took to generate)"
STATEMENTS: tuple[str, ...] = (
    # NULL for every message stored before: their speed is unknown, not zero.
    "ALTER TABLE messages ADD COLUMN duration REAL CHECK (duration IS NULL OR duration >= 0)",
)
