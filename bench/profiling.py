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
    """Inclusive share of samples per function from py-spy's raw (collapsed) output."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = {_short(frame) for frame in stack.split(";")}
        total += count
        for frame in frames:
            inclusive[frame] += count
    top = [{"function": name, "share": round(count / total, 4)} for name, count in inclusive.most_common(200)
           if _interesting(name)][:TOP]
    return {"samples": total, "top": top}


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
    # Frames every busy sample shares (thread bootstrap, the event loop's run) say nothing.
    boring = ("_bootstrap", "run_forever", "_run_once", "<module>", "run (asyncio/runners.py", "run (uvicorn",
              "main (", "serve (", "_serve (", "run (threading.py", "worker (concurrent", "_worker (anyio",
              "run (anyio", "uvloop", "process (multiprocessing", "_run (asyncio/events.py", "target (",
              "run (uvicorn/server.py", "cmd_serve", "subprocess_started", "invoke (", "__call__ (click")
    return not any(b in name for b in boring)


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
