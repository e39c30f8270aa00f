"""v4: the platform messages that show an assistant reply, so a reply cut by a crash can be
marked as cut on the platform after a restart."""

VERSION = 4
DESCRIPTION = "messages.refs (JSON list of the platform message ids showing a reply)"
STATEMENTS: tuple[str, ...] = (
    # NULL for every message stored before, and for messages no platform message shows.
    "ALTER TABLE messages ADD COLUMN refs TEXT",
)
