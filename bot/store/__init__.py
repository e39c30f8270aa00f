"""The store room: what survives a restart.

The :class:`bot.store.port.Store` protocol, its SQLite implementation (``sqlite``, the only
module that imports ``aiosqlite``) and its numbered migrations (``migrations``).
"""
