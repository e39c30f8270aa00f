"""v5: who writes each reply, which runs of the bot are alive, and leases.

Several processes may share one database (on PostgreSQL; on SQLite, a second process on the
same file is the case this guards). A reply records the instance and the boot (one run of a
process) that writes it, so that after a crash a process marks interrupted only its own cut
replies, never one another live process is still writing. A lease names the boot that holds it
(the one Matrix sync of an account).
"""

VERSION = 5
DESCRIPTION = "messages.owner_instance/owner_boot, boots, leases"
STATEMENTS: tuple[str, ...] = (
    # NULL for every message stored before: their writer is gone.
    "ALTER TABLE messages ADD COLUMN owner_instance TEXT",
    "ALTER TABLE messages ADD COLUMN owner_boot INTEGER",
    # One row per open store; closed_at is set by a clean close. A boot is alive while its row
    # is open and its lock file is held (bot/store/sqlite_boots.py); host and pid are for people.
    """
    CREATE TABLE boots (
        boot INTEGER PRIMARY KEY,
        instance TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        closed_at TEXT
    )
    """,
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        boot INTEGER NOT NULL,
        instance TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        acquired_at TEXT NOT NULL
    ) WITHOUT ROWID
    """,
)
