"""The peer: LiteLLM's proxy, in its own virtual environment under bench/work/, callbacks off, no retries.

The version is pinned: LiteLLM releases 1.82.7, 1.82.8 and 1.107.0 were published by an attacker
(credential stealers) and withdrawn from PyPI; 1.106.12 predates the last of those incidents.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from .procstat import CpuPlan
from .targets import ROOT, Target, _base_env, _ready, _spawn, free_port

LITELLM_VERSION = "1.106.12"
REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"

CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {upstream}
      api_key: sk-bench
litellm_settings:
  num_retries: 0
  request_timeout: 30
  callbacks: []
  success_callback: []
  failure_callback: []
  drop_params: true
  telemetry: false
router_settings:
  num_retries: 0
general_settings:
  disable_spend_logs: true
"""


def venv_dir(_work: Path) -> Path:
    """One virtual environment for every run mode, kept between runs (bench/work/ is not committed)."""
    return ROOT / "bench" / "work" / "litellm-venv"


def ensure_installed(work: Path, log: Path) -> str | None:
    """Install the pinned LiteLLM proxy into its own venv (once); None when ready, else why not."""
    venv = venv_dir(work)
    python = venv / "bin" / "python"
    if _installed_version(python) == LITELLM_VERSION:
        return None
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        with log.open("ab") as handle:
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", REQUIREMENT], check=True,
                           stdout=handle, stderr=subprocess.STDOUT, timeout=1200)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        return f"pip install {REQUIREMENT} failed ({type(error).__name__}); see {log}"
    if _installed_version(python) != LITELLM_VERSION:
        return f"{REQUIREMENT} did not install; see {log}"
    return None


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    found = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                           capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def start_litellm(work: Path, plan: CpuPlan, upstream: str) -> Target:
    """The proxy with one worker, pinned like supportbot; requests need its master key."""
    config = work / "litellm.yaml"
    config.write_text(CONFIG.format(upstream=upstream), encoding="utf-8")
    master_key = "sk-" + secrets.token_hex(32)
    env = _base_env() | {"LITELLM_MASTER_KEY": master_key, "LITELLM_LOG": "ERROR",
                         "LITELLM_TELEMETRY": "False", "NO_DOCKER": "1"}
    port = free_port()
    log = work / "litellm.log"
    binary = venv_dir(work) / "bin" / "litellm"
    args = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    process = _spawn(args, env, log, work)
    _ready(process, port, "/health/liveliness", 180, log, plan.service)
    return Target("litellm", f"LiteLLM proxy {LITELLM_VERSION}", "openai", port, process,
                  version=LITELLM_VERSION, api_key=master_key)
