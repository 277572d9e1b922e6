"""Where the server's CPU goes: py-spy samples a target during an extra open-loop run.

The profile run is not one of the measured runs (sampling slows the process); it answers *why* a
figure is what it is. Stacks are kept raw under bench/work/ and summarized as the share of busy samples
whose stack contains each function (inclusive), so a table shows e.g. how much of a turn is the ORM.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .loadtest import LoadClient, base_spec
from .profiles import Profile
from .targets import Target

TOP = 25
GIL: list[str] = []
_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^()]+?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    """The py-spy binary, when installed (beside this interpreter or on PATH)."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile_target(client: LoadClient, target: Target, profile: Profile, prompt: str, work: Path,
                   seconds: float) -> dict[str, Any]:
    """Sample `target` with py-spy while it serves open-loop turns for `seconds`."""
    binary = py_spy()
    if binary is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    raw = work / f"profile-{target.name}.txt"
    rate = profile.open_rate
    spec = {**base_spec(target, profile, prompt), "mode": "open", "rate": rate, "turns": int(rate * seconds)}
    recorder = subprocess.Popen(
        [binary, "record", "--pid", str(target.process.pid), "--rate", "250", "--format", "raw", "--nonblocking", *GIL,
         "--subprocesses", "--output", str(raw), "--duration", str(int(seconds) + 2)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    result = client.run(spec)
    _, stderr = recorder.communicate(timeout=seconds + 60)
    if recorder.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {stderr.decode(errors='replace').strip()[-300:]}"}
    summary = summarize_stacks(raw.read_text(encoding="utf-8", errors="replace"))
    summary.update({"turns": result["turns_ok"], "raw": str(raw.relative_to(work.parent.parent.parent))
                    if raw.is_relative_to(work.parent.parent.parent) else str(raw)})
    return summary


def summarize_stacks(text: str) -> dict[str, Any]:
    """Inclusive share of samples per function from py-spy's raw (collapsed) output.

    Samples whose innermost frame is a wait (an idle worker thread) are dropped; the frames every
    request shares (server, framework, event loop) are left out of the table, not out of the total.
    """
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_short(frame) for frame in stack.split(";")]
        if any(frames[-1].startswith(wait) for wait in _WAITS):
            continue
        count = int(count_text)
        total += count
        for frame in set(frames):
            inclusive[frame] += count
    top = [{"function": name, "share": round(count / total, 4)} for name, count in inclusive.most_common(400)
           if _interesting(name)][:TOP]
    return {"samples": total, "top": top}


_WAITS = ("Condition.wait ", "Event.wait ", "Thread._wait_for_tstate_lock ", "Queue.get (queue.py",
          "select (selectors.py", "_worker (concurrent")
_FRAMEWORK = ("starlette/", "fastapi/", "uvicorn/", "anyio/", "asyncio/", "threading.py", "contextlib.py",
              "<frozen runpy>", "concurrent/", "service/api/app.py", "service/cli.py", "uvloop", "click/")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['function']} ({path})"


def _interesting(name: str) -> bool:
    if name.startswith(("process ", "Thread ", "<module> ")):
        return False
    return not any(f"({marker}" in name or f"/{marker}" in name for marker in _FRAMEWORK)


def profile_command(args: list[str], env: dict[str, str], raw: Path, focus: str) -> dict[str, Any]:
    """Run a command under py-spy and summarize the samples whose stack contains `focus`."""
    binary = py_spy()
    if binary is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    completed = subprocess.run([binary, "record", "--rate", "100", "--format", "raw", "--nonblocking",
                                "--output", str(raw), "--", *args], env=env, capture_output=True)
    if completed.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {completed.stderr.decode(errors='replace').strip()[-300:]}"}
    lines = [line for line in raw.read_text(encoding="utf-8", errors="replace").splitlines() if focus in line]
    summary = summarize_stacks("\n".join(lines))
    summary.update({"focus": focus, "raw": str(raw)})
    return summary


def resummarize(results: dict[str, Any]) -> None:
    """Recompute profile tables from their raw stacks (when still on disk) with the current summary rules."""
    root = Path(__file__).resolve().parent.parent
    profiles = list((results.get("live") or {}).get("profiles", {}).values())
    export = (results.get("components") or {}).get("export_profile")
    for profile in [*profiles, *([export] if export else [])]:
        raw = Path(profile.get("raw", ""))
        raw = raw if raw.is_absolute() else root / raw
        if "top" not in profile or not raw.is_file():
            continue
        text = raw.read_text(encoding="utf-8", errors="replace")
        if profile.get("focus"):
            text = "\n".join(line for line in text.splitlines() if profile["focus"] in line)
        profile.update(summarize_stacks(text))
