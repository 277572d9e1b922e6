"""`supportbot serve` as a real process, for tests that need a port, signals or restarts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.config import PROJECT_ROOT

SUPPORTBOT = str(Path(sys.executable).parent / "supportbot")
# The service reads ./prompts and ./knowledge; tests run it in a temporary directory, so name the repo's.
EXAMPLE_DIRS = {"SUPPORTBOT_PROMPTS_DIR": str(PROJECT_ROOT / "prompts"),
                "SUPPORTBOT_KNOWLEDGE_DIR": str(PROJECT_ROOT / "knowledge")}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without the developer's SUPPORTBOT_/OPENAI_ settings, with a fresh data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "OPENAI_"))}
    # Processes started here test serving, not language detection (tests/test_language.py does, in process):
    # the fast models load in under a second, the accurate ones take several per start.
    return {**env, "SUPPORTBOT_DATA_DIR": str(tmp_path / "data"), "SUPPORTBOT_LANGUAGE_DETECTION": "fast",
            **EXAMPLE_DIRS, **extra}


class ServiceProcess:
    """One `supportbot serve` on a free port; start it, signal it, start it again."""

    def __init__(self, tmp_path: Path, *, command: str = SUPPORTBOT, **env: str) -> None:
        self.command = command
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(tmp_path, **env)
        self.cwd = tmp_path
        self.log_path = tmp_path / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def migrate(self) -> None:
        subprocess.run([self.command, "db", "upgrade"], env=self.env, check=True, capture_output=True, cwd=self.cwd)

    def start(self) -> None:
        """Start and wait until /readyz answers 200."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([self.command, "serve", "--port", str(self.port)], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd)
        deadline = time.monotonic() + 60  # generous: CI machines share their cores
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"service did not become ready:\n{self.log_path.read_text()}")

    def signal(self, number: int, timeout: float = 60) -> int:
        """Send a signal and wait for the process to end; its exit status."""
        assert self.process is not None
        self.process.send_signal(number)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
