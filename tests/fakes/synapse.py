"""A real Synapse homeserver on loopback, for tests and benchmarks.

Not a fake in the strict sense: this runs the real ``synapse.app.homeserver`` as a child process
in a temporary directory, bound to 127.0.0.1 on a free port, with the client API only (no
federation). Synapse's DEFAULT message rate limits stay in force (``rc_message`` 0.2/s, burst
10), so one server serves both kinds of test: tests that are not about rate limits lift them per
user with :meth:`SynapseServer.lift_ratelimit` (the admin API's ``override_ratelimit``), and the
rate-limit tests keep them. Set-up limits (registration, login, joins, invites, room creation)
are raised in the config so fixtures are never throttled.

Usage::

    server = SynapseServer(tmp_dir)
    server.start()
    user_id, token = server.register("alice")
    ...
    server.stop()

Everything here is synchronous (``subprocess`` and ``urllib``): it does not depend on any event
loop, so a session-scoped fixture can share one server across function-scoped loops.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["SynapseServer", "SynapseError"]

SERVER_NAME = "ollabot.test"
_SHARED_SECRET = "ollabot-test-shared-secret"
_START_TIMEOUT = 30.0

# Limits raised only for set-up operations; rc_message is deliberately left at its default.
_SETUP_LIMITS = {"per_second": 1000, "burst_count": 1000}


class SynapseError(RuntimeError):
    """Synapse failed to start or an admin call failed."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(directory: Path, port: int) -> dict[str, Any]:
    return {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "report_stats": False,
        "pid_file": str(directory / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
        "log_config": str(directory / "log.yaml"),
        "media_store_path": str(directory / "media"),
        "signing_key_path": str(directory / "signing.key"),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "registration_shared_secret": _SHARED_SECRET,
        "enable_registration": False,
        "bcrypt_rounds": 4,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "enable_metrics": False,
        "rc_registration": _SETUP_LIMITS,
        "rc_login": {
            "address": _SETUP_LIMITS,
            "account": _SETUP_LIMITS,
            "failed_attempts": _SETUP_LIMITS,
        },
        "rc_joins": {"local": _SETUP_LIMITS, "remote": _SETUP_LIMITS},
        "rc_joins_per_room": _SETUP_LIMITS,
        "rc_invites": {
            "per_room": _SETUP_LIMITS,
            "per_user": _SETUP_LIMITS,
            "per_issuer": _SETUP_LIMITS,
        },
        "rc_room_creation": _SETUP_LIMITS,
        "rc_profile": _SETUP_LIMITS,
    }


def _log_config(directory: Path) -> str:
    # Synapse logs hundreds of INFO lines per run to stderr without this; keep them in a file.
    return f"""version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {directory / "homeserver.log"}
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"""


class SynapseServer:
    """A Synapse child process in ``directory``, serving the client API on 127.0.0.1.

    Args:
        directory: An empty directory the server owns (config, keys, database, logs).
        port: The port to bind; a free one when ``None``. Kept across :meth:`restart`.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._admin_token: str | None = None
        self._config_path = directory / "homeserver.yaml"

    @property
    def url(self) -> str:
        """The homeserver's base URL, e.g. ``http://127.0.0.1:8448``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def server_name(self) -> str:
        return SERVER_NAME

    @property
    def log_path(self) -> Path:
        return self.directory / "homeserver.log"

    def start(self) -> None:
        """Write the config (first time), start Synapse and wait until ``/health`` says OK."""
        if not self._config_path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / "log.yaml").write_text(_log_config(self.directory))
            # JSON is valid YAML, and needs no YAML writer.
            self._config_path.write_text(json.dumps(_config(self.directory, self.port), indent=2))
            subprocess.run(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self._config_path)]
                + ["--generate-keys"],
                cwd=self.directory,
                check=True,
                capture_output=True,
            )
        stderr = (self.directory / "stderr.log").open("ab")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self._config_path)],
                cwd=self.directory,
                stdout=stderr,
                stderr=stderr,
            )
        finally:
            stderr.close()
        self._wait_healthy()

    def stop(self) -> None:
        """Stop Synapse with SIGTERM (SIGKILL if it does not exit within 10 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port with the same database."""
        self.stop()
        self.start()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise SynapseError(
                    f"Synapse exited with {self._process.returncode}; see {self.directory}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.read() == b"OK":
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise SynapseError(f"Synapse did not become healthy in {_START_TIMEOUT:g} s")

    # ----------------------------------------------------------------- HTTP helpers

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Call the client or admin API; returns the JSON body.

        Raises:
            SynapseError: On any non-2xx answer (with the errcode and body).
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                result: dict[str, Any] = json.loads(response.read() or b"{}")
                return result
        except urllib.error.HTTPError as err:
            raise SynapseError(f"{method} {path} -> {err.code}: {err.read().decode()}") from err

    def register(
        self, username: str, admin: bool = False, password: str | None = None
    ) -> tuple[str, str]:
        """Register a user through the shared-secret admin API.

        Returns:
            ``(user_id, access_token)``.
        """
        password = password or f"pw-{username}"
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(_SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), username.encode(), password.encode()]))
        mac.update(b"\x00admin" if admin else b"\x00notadmin")
        result = self.request(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce,
                "username": username,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        return result["user_id"], result["access_token"]

    def admin_token(self) -> str:
        """An access token of a server admin (registered on first use)."""
        if self._admin_token is None:
            _, self._admin_token = self.register(f"admin-{os.getpid()}-{self.port}", admin=True)
        return self._admin_token

    def lift_ratelimit(self, user_id: str) -> None:
        """Exempt ``user_id`` from message rate limits (what operators do for bots)."""
        path = f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id)}/override_ratelimit"
        self.request(
            "POST", path, {"messages_per_second": 0, "burst_count": 0}, token=self.admin_token()
        )

    def __enter__(self) -> SynapseServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
