"""nginx with the shipped deploy/nginx.conf, run by an unprivileged user: for the deployment tests and bench.run.

Only the binary is taken from the machine (Debian's package; scripts/ensure-nginx.sh installs it where it can);
the config is the shipped one with its ports, upstream servers, paths and user changed.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
ENSURE_NGINX = ROOT / "scripts" / "ensure-nginx.sh"
_SERVER = re.compile(r"^(\s*server\s+)supportbot-\d+:8000(\s)")


def nginx_binary() -> str | None:
    """Debian's nginx, installed by scripts/ensure-nginx.sh when missing (root with apt only)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None and ENSURE_NGINX.exists():
        subprocess.run(["sh", str(ENSURE_NGINX)], capture_output=True, timeout=600)
        found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    return found


def render_nginx_conf(conf: str, directory: Path, port: int, upstreams: list[str]) -> str:
    """The shipped config with only its ports, upstream servers, paths and user changed for a run in `directory`.

    The config lists its replicas as `server supportbot-N:8000`; they become `upstreams` in order, and the
    lines beyond them are left out (two replicas of a config written for three)."""
    lines = conf.splitlines(keepends=True)
    servers = [i for i, line in enumerate(lines) if _SERVER.match(line)]
    if not upstreams or len(upstreams) > len(servers):
        raise ValueError(f"nginx.conf lists {len(servers)} replicas; cannot run {len(upstreams)}")
    for index, address in zip(servers, upstreams, strict=False):
        lines[index] = _SERVER.sub(lambda m, a=address: f"{m[1]}{a}{m[2]}", lines[index])
    for index in reversed(servers[len(upstreams):]):
        del lines[index]
    conf = "".join(lines)
    replacements = [("listen 8080;", f"listen 127.0.0.1:{port};"),
                    ("user nginx;", f"user {pwd.getpwuid(os.getuid()).pw_name};"),
                    ("/var/run/nginx.pid", str(directory / "nginx.pid")),
                    ("/var/log/nginx/", f"{directory / 'log'}/"),
                    ("/var/cache/nginx/", f"{directory / 'cache'}/")]
    for old, new in replacements:
        if old not in conf:
            raise ValueError(f"nginx.conf no longer has {old!r}: update bench/nginx.py's template")
        conf = conf.replace(old, new)
    return conf


def nginx_command(binary: str, directory: Path) -> list[str]:
    """nginx in the foreground with the config `render_nginx_conf` wrote to `directory`/nginx.conf."""
    for folder in ("log", "cache"):
        (directory / folder).mkdir(parents=True, exist_ok=True)
    return [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e",
            str(directory / "log" / "error.log"), "-g", "daemon off;"]
