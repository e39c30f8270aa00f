"""The ``ollabot`` command line: ``run``, ``chat``, ``check``, ``models``, ``migrate``.

The configuration is loaded here, once, and handed down. This is the outermost edge, so it is
where :class:`bot.errors.OllabotError` becomes one line on stderr and an exit code, never a
traceback:

- 0: done;
- 1: something the bot needs is unreachable or missing (Ollama down, ``check`` found a problem);
- 2: the configuration (or the command line) is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import DEFAULT_CONFIG_PATH, BotConfig, load_config, url_password
from bot.errors import ConfigError, OllabotError, StoreError
from bot.logs import configure_logging, register_secret, shutdown_logging

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

# Interactive commands keep stderr quiet unless asked; `run` logs at the configured level.
_QUIET_COMMANDS = {"chat", "check", "models", "migrate"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="ollabot",
        description="Local Ollama models in Discord servers, Matrix rooms and the terminal.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"the TOML config file (default: {DEFAULT_CONFIG_PATH}; optional when it is missing)",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        type=str.upper,
        default=None,
        help="override logging.level (chat, check and models default to WARNING)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run", help="start every configured adapter (the terminal chat when none is)"
    )
    chat = commands.add_parser("chat", help="chat with the bot in this terminal")
    for command in (run, chat):
        command.add_argument(
            "--plain",
            action="store_true",
            help="the terminal chat as plain text: no colour, no line editing, the model's text "
            "exactly (the default when input or output is not a terminal, NO_COLOR is set or "
            "TERM=dumb)",
        )
    commands.add_parser(
        "check", help="validate the config, reach Ollama, say what each adapter is missing"
    )
    commands.add_parser("models", help="list the models installed in Ollama")
    migrate = commands.add_parser(
        "migrate",
        help="copy a stopped SQLite install into PostgreSQL and verify the counts per table",
    )
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="sqlite:PATH",
        default=None,
        help="the SQLite file (default: storage.path)",
    )
    migrate.add_argument(
        "--to",
        dest="target",
        metavar="URL",
        default=None,
        help="the postgresql:// database (default: OLLABOT_DATABASE_URL or storage.url)",
    )
    migrate.add_argument(
        "--force", action="store_true", help="replace what the target database already holds"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ollabot`` command line.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit code.
    """
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        _fail(f"configuration error: {exc.user_message}")
        return EXIT_CONFIG
    for secret in config.secret_values():
        register_secret(secret)
    # `run` with no adapter configured becomes the terminal chat: keep its screen quiet too.
    terminal = args.command in _QUIET_COMMANDS or (
        args.command == "run" and config.discord is None and config.matrix is None
    )
    level = args.log_level or ("WARNING" if terminal else None)
    configure_logging(
        level or config.logging.level,
        stream=sys.stderr,
        json=config.logging.json_format,
        log_bodies=config.logging.log_bodies,
    )
    source = str(args.config or DEFAULT_CONFIG_PATH)
    if args.config is None and not DEFAULT_CONFIG_PATH.exists():
        source = f"{DEFAULT_CONFIG_PATH} (absent: defaults)"
    try:
        return asyncio.run(_dispatch(args, config, source))
    except ConfigError as exc:
        _fail(f"configuration error: {exc.user_message}")
        return EXIT_CONFIG
    except StoreError as exc:
        # The person at this edge is the operator: the path and the cause help them, and a
        # store's detail never holds a secret.
        detail = "" if exc.detail == exc.user_message else f" ({exc.detail})"
        where = "" if args.command == "migrate" else f" {_where(config)}."
        _fail(f"{exc.user_message}{detail}{where}")
        return EXIT_FAILED
    except OllabotError as exc:
        _fail(exc.user_message)
        return EXIT_FAILED
    except KeyboardInterrupt:
        # Only reached where signal handlers cannot be installed (e.g. Windows).
        return EXIT_OK
    finally:
        shutdown_logging()


async def _dispatch(args: argparse.Namespace, config: BotConfig, source: str) -> int:
    # Imported here so that `ollabot --help` and config errors stay fast and never load the
    # engine, the Ollama client or an adapter.
    from ollabot_app import check, migrate, serve

    command: str = args.command
    plain: bool = getattr(args, "plain", False)
    if command == "migrate":
        if args.target:
            register_secret(args.target)
            if password := url_password(args.target):
                register_secret(password)
        return await migrate.migrate_command(
            config, source=args.source, target=args.target, force=args.force
        )
    if command == "check":
        return await check.check(config, source=source)
    if command == "models":
        return await check.list_models(config)
    if command == "chat":
        await serve.run_chat(config, plain=plain)
        return EXIT_OK
    await serve.run_bot(config, source=source, plain=plain)
    return EXIT_OK


def _where(config: BotConfig) -> str:
    from ollabot_app.wiring import describe_store

    return describe_store(config)


def _fail(message: str) -> None:
    sys.stderr.write(f"ollabot: {message}\n")
    sys.stderr.flush()
