"""The store room: what survives a restart.

The :class:`bot.store.port.Store` protocol and its two implementations, each with its numbered
migrations (``migrations/sqlite``, ``migrations/postgres``) and one contract suite run on both:

- ``sqlite`` (queries), ``sqlite_db`` (connection) and ``sqlite_boots`` (which runs are alive,
  leases): the embedded default, one file; ``aiosqlite`` is imported only by these;
- ``postgres`` (queries) and ``postgres_db`` (pool, boots and leases, errors): several processes
  on one server; ``asyncpg`` is imported only by ``postgres_db``.

What the two drivers do alike is written once: ``rows`` (rows into the port's dataclasses, JSON
values and refs), ``context`` (choosing a turn's context messages in batches) and ``failures``
(what a user is told when the database fails). ``transfer`` copies a SQLite install into
PostgreSQL (``ollabot migrate``).
"""
