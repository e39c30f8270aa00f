"""The model room: talking to the chat model.

The chat-model port (``port``), its Ollama implementation (``ollama``, the only module that
imports ``ollama``), generation with timeouts and retries (``generation``, ``watchdog``,
``retry``), model metadata (``catalogue``), the reply cache and the tool registry.
"""
