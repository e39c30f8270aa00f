"""The terminal chat end to end: ``python -m ollabot_app chat`` with stdin piped, against the
fake Ollama over a real socket, with the real engine and a SQLite file in ``tmp_path``."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
from pathlib import Path

from tests.cli.runner import (
    closed_port_url,
    finish,
    read_until,
    run_ollabot,
    start_ollabot,
    write_config,
)
from tests.console.terminal import Terminal
from tests.fakes.fake_ollama import FakeOllama, Reply


def _user_texts(body: dict[str, object]) -> list[str]:
    messages = body["messages"]
    assert isinstance(messages, list)
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_question_streams_answer_mode_changes_pull_shows_progress_and_quit_exits(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    fake_ollama.script(Reply(tokens=["The ", "sky ", "is ", "blue."]))
    stdin = "why is the sky blue?\n/mode precise\nand the sea?\n/model pull mistral\n/quit\nnever\n"

    result = await run_ollabot(
        "--config",
        str(config),
        "chat",
        cwd=tmp_path,
        env={"OLLAMA_HOST": fake_ollama.url},
        stdin=stdin,
    )

    assert result.code == 0, result.output
    assert "The sky is blue." in result.stdout
    assert "echo: and the sea?" in result.stdout
    assert "precise" in result.stdout
    assert "100%" in result.stdout
    assert "Traceback" not in result.output
    # The answer streamed: the fake sent it as four tokens and the bot asked for a stream.
    assert fake_ollama.requests[0]["stream"] is True
    # The mode reached the model: precise answers sample at temperature 0.2.
    assert fake_ollama.requests[0]["options"]["temperature"] != 0.2
    assert fake_ollama.requests[1]["options"]["temperature"] == 0.2
    assert "mistral:latest" in fake_ollama.models
    # /quit left before the next line.
    assert len(fake_ollama.requests) == 2
    assert "never" not in result.stdout


async def test_restart_keeps_the_conversation(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    config = write_config(tmp_path)
    env = {"OLLAMA_HOST": fake_ollama.url}

    first = await run_ollabot(
        "--config", str(config), "chat", cwd=tmp_path, env=env, stdin="my name is Ada\n"
    )
    second = await run_ollabot(
        "--config", str(config), "chat", cwd=tmp_path, env=env, stdin="what is my name?\n"
    )

    assert first.code == 0, first.output
    assert second.code == 0, second.output
    assert "echo: what is my name?" in second.stdout
    assert _user_texts(fake_ollama.requests[-1]) == ["my name is Ada", "what is my name?"]


async def test_reset_starts_a_fresh_conversation(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    config = write_config(tmp_path)

    result = await run_ollabot(
        "--config",
        str(config),
        "chat",
        cwd=tmp_path,
        env={"OLLAMA_HOST": fake_ollama.url},
        stdin="remember 42\n/reset\nwhat number?\n",
    )

    assert result.code == 0, result.output
    assert _user_texts(fake_ollama.requests[-1]) == ["what number?"]


async def test_stop_ends_the_reply_being_written_and_keeps_the_chat(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    gate = asyncio.Event()  # never set: the reply hangs until it is stopped
    fake_ollama.script(Reply(tokens=["never", " shown"], gate=gate))
    proc = await start_ollabot(
        "--config", str(config), "chat", cwd=tmp_path, env={"OLLAMA_HOST": fake_ollama.url}
    )
    assert proc.stdin is not None

    proc.stdin.write(b"tell me a long story\n")
    await proc.stdin.drain()
    await fake_ollama.wait_for_requests(1, within=30)
    result = await finish(proc, "/stop\nhello again\n")

    assert result.code == 0, result.output
    assert "stopped" in result.stderr  # how a reply ended is not part of the model's text
    assert "echo: hello again" in result.stdout
    await fake_ollama.wait_for_client_close(1, within=30)


async def test_ctrl_c_stops_the_reply_then_leaves(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    config = write_config(tmp_path)
    fake_ollama.script(Reply(tokens=["never"], gate=asyncio.Event()))
    proc = await start_ollabot(
        "--config", str(config), "chat", cwd=tmp_path, env={"OLLAMA_HOST": fake_ollama.url}
    )
    assert proc.stdin is not None
    assert proc.stderr is not None

    proc.stdin.write(b"tell me a long story\n")
    await proc.stdin.drain()
    await fake_ollama.wait_for_requests(1, within=30)
    proc.send_signal(signal.SIGINT)
    shown = await read_until(proc.stderr, "stopped")
    proc.send_signal(signal.SIGINT)  # nothing is running now: this one leaves
    result = await finish(proc)

    assert result.code == 0, result.output
    assert "stopped" in shown
    assert "Traceback" not in result.output


async def test_chat_with_ollama_down_warns_and_shows_the_error(tmp_path: Path) -> None:
    host = closed_port_url()
    config = write_config(tmp_path, "[ollama]\nretry_attempts = 1\n")

    result = await run_ollabot(
        "--config",
        str(config),
        "chat",
        cwd=tmp_path,
        env={"OLLAMA_HOST": host},
        stdin="hello?\n",
    )

    assert result.code == 0, result.output
    assert f"Cannot reach Ollama at {host}" in result.stderr
    assert "OLLAMA_HOST" in result.output
    assert f"error: Cannot reach Ollama at {host}" in result.stderr  # the reply's outcome
    assert "Traceback" not in result.output


async def test_bad_command_shows_usage_and_the_chat_goes_on(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)

    result = await run_ollabot(
        "--config",
        str(config),
        "chat",
        cwd=tmp_path,
        env={"OLLAMA_HOST": fake_ollama.url},
        stdin="/frobnicate\n/help\nstill here\n",
    )

    assert result.code == 0, result.output
    assert "Unknown command '/frobnicate'" in result.stdout
    assert "/quit" in result.stdout
    assert "echo: still here" in result.stdout
    # /help lists what works in a terminal, in a terminal's words.
    assert "/ask" not in result.stdout
    assert "/chat" not in result.stdout
    assert "in this chat" in result.stdout
    assert "channel" not in result.stdout


async def test_run_without_adapters_starts_the_terminal_chat(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)

    result = await run_ollabot(
        "--config",
        str(config),
        "run",
        cwd=tmp_path,
        env={"OLLAMA_HOST": fake_ollama.url},
        stdin="hi\n",
    )

    assert result.code == 0, result.output
    assert "No adapter is configured" in result.stderr
    assert "echo: hi" in result.stdout
    assert '"level": "INFO"' not in result.stderr  # the chat screen is not buried in logs


async def test_sigterm_lets_the_reply_in_flight_finish_and_closes_the_database(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    gate = asyncio.Event()
    fake_ollama.script(Reply(tokens=["finished ", "anyway"], gate=gate))
    proc = await start_ollabot(
        "--config", str(config), "run", cwd=tmp_path, env={"OLLAMA_HOST": fake_ollama.url}
    )
    assert proc.stdin is not None

    proc.stdin.write(b"a question\n")
    await proc.stdin.drain()
    await fake_ollama.wait_for_requests(1, within=30)
    proc.send_signal(signal.SIGTERM)
    gate.set()  # the model finishes during the shutdown grace period
    result = await finish(proc)

    assert result.code == 0, result.output
    assert "Traceback" not in result.output
    db = sqlite3.connect(tmp_path / "ollabot.db")
    try:
        rows = db.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    finally:
        db.close()
    assert ("assistant", "finished anyway", "complete") in rows


async def test_a_reply_cut_at_the_length_limit_says_so(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    fake_ollama.script(Reply.text("An answer that looks whole.", done_reason="length"))

    result = await run_ollabot(
        "--config",
        str(config),
        "chat",
        cwd=tmp_path,
        env={"OLLAMA_HOST": fake_ollama.url},
        stdin="explain\n",
    )

    assert result.code == 0, result.output
    assert result.stdout == "An answer that looks whole.\n"
    assert "cut at the length limit" in result.stderr


async def test_cot_streams_its_steps_and_ctrl_c_stops_it_without_leaving(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    hold = asyncio.Event()  # never set: the model is stuck after its first step
    tokens = ['{"steps": ["1. Multiply', ' 6 by 7"', ', "Che', 'ck"]}']
    fake_ollama.script(Reply(tokens=tokens, hold_after=3, release=hold))
    proc = await start_ollabot(
        "--config", str(config), "chat", cwd=tmp_path, env={"OLLAMA_HOST": fake_ollama.url}
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None

    proc.stdin.write(b"/cot what is 6*7?\n")
    await proc.stdin.drain()
    shown = await read_until(proc.stdout, "Multiply 6 by 7")  # progress while it runs
    proc.send_signal(signal.SIGINT)  # stops the chain, like any reply
    ended = await read_until(proc.stderr, "stopped")
    result = await finish(proc, "after the chain\n/quit\n")

    assert result.code == 0, result.output
    assert "stopped" in ended
    assert "1. Multiply 6 by 7" in shown
    assert "1. 1." not in shown
    assert "{" not in shown
    assert "echo: after the chain" in result.stdout
    assert fake_ollama.requests[0]["format"]["type"] == "object"
    assert _user_texts(fake_ollama.requests[1])[0] == "what is 6*7?"  # stored in the chat


CODE_ANSWER = (
    "Here:\n\n```python\ndef cook(pots):\n    for pot in pots:\n        stir(pot)\n```\nDone."
)


async def test_piped_output_is_exactly_the_streamed_text_even_inside_a_code_block(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    # One word (with the blanks after it) per chunk, as a model streams: every word inside the
    # code block arrives while the block is open. The delay only spaces the chunks out so that
    # each is shown on its own (the bot would otherwise coalesce them into one write).
    words = re.findall(r"\s*\S+\s*", CODE_ANSWER)
    assert "".join(words) == CODE_ANSWER
    fake_ollama.script(Reply(tokens=words, token_delay=0.02))

    result = await run_ollabot(
        "--config",
        str(config),
        "chat",
        cwd=tmp_path,
        env={"OLLAMA_HOST": fake_ollama.url},
        stdin="some code please\n/model set llama3.2\n",
    )

    assert result.code == 0, result.output
    assert result.stdout.startswith(CODE_ANSWER + "\n")
    assert "This chat now uses `llama3.2`." in result.stdout
    assert "tokens/s]" in result.stderr


async def test_plain_flag_on_a_terminal_still_prints_the_text_exactly(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    fake_ollama.script(Reply(tokens=re.findall(r"\s*\S+\s*", CODE_ANSWER), token_delay=0.02))
    env = {"OLLAMA_HOST": fake_ollama.url}
    term = Terminal("--config", str(config), "chat", "--plain", cwd=tmp_path, env=env)
    try:
        await asyncio.to_thread(term.wait_for, "/quit to leave.")
        term.type("some code please\r")
        await asyncio.to_thread(term.wait_for, "tokens/s]")
        term.type("/quit\r")
        code = await asyncio.to_thread(term.wait_exit)
    finally:
        term.close()

    assert code == 0
    # The terminal turns "\n" into "\r\n"; nothing else is added to the model's text.
    assert (CODE_ANSWER.replace("\n", "\r\n") + "\r\n").encode() in term.raw
    assert term.raw.count(b"```") == 2  # the model's two fences, and no other
    assert b"\x1b[" not in term.raw.split(b"some code please")[1].split(b"[llama")[0]
