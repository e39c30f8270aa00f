"""``ollabot check`` and ``ollabot models`` with ``ollama.hosts``: each host, its models, state."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_config
from bot.errors import ConfigError
from tests.cli.runner import closed_port_url, run_ollabot, write_config
from tests.fakes.fake_ollama import FakeOllama


def hosts_config(tmp_path: Path, *urls: str) -> Path:
    listed = ", ".join(f'"{u}"' for u in urls)
    return write_config(tmp_path, f"[ollama]\nhosts = [{listed}]\n")


async def test_check_shows_every_host_its_models_and_a_down_one(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3:8b")
    down = closed_port_url()
    config = hosts_config(tmp_path, fake_ollama.url, down)
    short = fake_ollama.url.split("//")[1]

    result = await run_ollabot(
        "--config", str(config), "check", cwd=tmp_path, env={"OLLAMA_HOST": "http://gpu9:1"}
    )

    assert result.code == 1, result.output  # a configured host is missing
    assert f"[ok] ollama: reachable at {fake_ollama.url}" in result.stdout
    assert f"[ok] models on {short}: llama3.2:latest, qwen3:8b" in result.stdout
    # Its line does not point at OLLAMA_HOST, which is ignored with several hosts.
    assert f"[!!] ollama: Cannot reach Ollama at {down}.\n" in result.stdout
    assert "[ok] default model: llama3.2 is installed on 1 of 2 hosts" in result.stdout
    # OLLAMA_HOST is ignored when ollama.hosts is set, and the operator is told.
    assert "gpu9" not in result.stdout
    assert "ollama.hosts is set, so ollama.host / OLLAMA_HOST (http://gpu9:1) is ignored" in (
        result.stderr
    )
    assert "Traceback" not in result.output


async def test_models_says_which_host_has_each_model(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    async with FakeOllama(models=["qwen3:8b"]) as other:
        other.loaded.add("qwen3:8b")
        config = hosts_config(tmp_path, fake_ollama.url, other.url)

        result = await run_ollabot("--config", str(config), "models", cwd=tmp_path)

    first, second = fake_ollama.url.split("//")[1], other.url.split("//")[1]
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("llama3.2:latest")
    assert lines[0].endswith(f"on {first}")
    assert lines[1].startswith("qwen3:8b")
    assert lines[1].endswith(f"on {second}")
    assert f"{first}  up (version 0.12.6), loaded: none" in lines
    assert f"{second}  up (version 0.12.6), loaded: qwen3:8b" in lines


def test_hosts_are_urls_and_replace_host_which_is_kept_for_the_warning(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[ollama]\nhosts = ["gpu1:11434", "https://gpu2:11434/"]\n')

    config = load_config(path, env={"OLLAMA_HOST": "http://elsewhere:11434"})
    (tmp_path / "plain").mkdir()
    plain = load_config(write_config(tmp_path / "plain"), env={})

    assert config.ollama.host_urls == ("http://gpu1:11434", "https://gpu2:11434")
    assert config.ollama.max_parallel_per_host == 4
    assert config.ollama.ignored_host == "http://elsewhere:11434"
    assert plain.ollama.host_urls == ("http://127.0.0.1:11434",)
    assert plain.ollama.ignored_host is None


@pytest.mark.parametrize(
    ("hosts", "message"),
    [("[]", "at least one host"), ('["gpu1", "http://gpu1"]', "names a host twice")],
)
def test_bad_hosts_are_refused_naming_the_key(tmp_path: Path, hosts: str, message: str) -> None:
    path = write_config(tmp_path, f"[ollama]\nhosts = {hosts}\n")

    with pytest.raises(ConfigError, match=rf"ollama\.hosts: .*{message}"):
        load_config(path, env={})
