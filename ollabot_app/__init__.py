"""The ``ollabot`` application: the command line that wires the engine to the adapters.

It lives outside ``bot/`` because it starts adapters, and the engine must never import them;
and outside ``adapters/`` because adapters must not import each other.
"""
