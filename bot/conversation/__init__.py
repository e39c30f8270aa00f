"""The conversation room: what happens to a turn or a command between the adapter and the model.

The engine, the command runner and the command values, the settings cascade, sessions (queues,
rate limits, running replies), history, attachments and the replies a crash cut. It may import
the rooms below it (``bot.model``, ``bot.reply``, ``bot.store``); none of them imports it.
"""
