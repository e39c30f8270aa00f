"""The store room: what survives a restart.

The :class:`bot.store.port.Store` protocol and its two implementations, each with its numbered
migrations (``migrations/sqlite``, ``migrations/postgres``) and one contract suite run on both:

- ``sqlite`` (queries), ``sqlite_db`` (connection) and ``sqlite_boots`` (which runs are alive,
  leases): the embedded default, one file; ``aiosqlite`` is imported only by these;
- ``postgres`` (queries) and ``postgres_db`` (pool, boots and leases, errors): several processes
  on one server; ``asyncpg`` is imported only by ``postgres_db``.

``transfer`` copies a SQLite install into PostgreSQL (``ollabot migrate``).
"""
