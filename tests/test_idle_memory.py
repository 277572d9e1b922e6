"""What an idle server holds: no importers' or other databases' libraries it does not use, and the allocator
tuning (service/allocator.py) under which a large block freed goes back to the system. What they save is measured
by `make bench` (docs/performance.md, Memory), not here.

Each check runs in a fresh interpreter (the setting is process-wide) and reads the mark glibc keeps on a block
it mapped on its own: after a 4 MiB block is freed, glibc by default raises its threshold and serves the next
4 MiB block from the heap, where freed space stays resident; with the threshold fixed, the next one gets a
mapping of its own again.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

PROBE = r"""
import ctypes, json, sys
from service.allocator import fix_mmap_threshold

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
applied = None
if sys.argv[1] == "fix":
    applied = fix_mmap_threshold()
elif sys.argv[1] == "serve":  # a served app's start-up, as `supportbot serve` runs it
    from fastapi.testclient import TestClient
    from service.api.app import create_app
    from service.config import Settings
    from service.db import upgrade

    url = f"sqlite:///{sys.argv[2]}/supportbot.db"
    upgrade(url)
    with TestClient(create_app(Settings(data_dir=sys.argv[2], database_url=url))) as client:
        assert client.get("/healthz").status_code == 200
size = 4 << 20
libc.free(libc.malloc(size))  # by default this raises the threshold above 4 MiB
block = libc.malloc(size)
# glibc marks a chunk it mapped on its own in the size word before the block (IS_MMAPPED, 0x2).
own_mapping = bool(ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & 0x2)
libc.free(block)
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[3:]))
print(json.dumps({"applied": applied, "own_mapping": own_mapping, "loaded": loaded}))
"""


def probe(mode: str, *args: str, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "SUPPORTBOT_"))} | env
    done = subprocess.run([sys.executable, "-c", PROBE, mode, *args], env=environ, capture_output=True, text=True,
                          check=True, timeout=180, cwd=args[0] if args else None)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_large_block_freed_after_start_up_gets_its_own_mapping_again() -> None:
    assert probe("fix") == {"applied": True, "own_mapping": True, "loaded": []}


# Libraries only a source import (trafilatura, pypdf, lxml), PostgreSQL or Redis needs: ~45 MB resident together.
NOT_NEEDED_ON_SQLITE = ("trafilatura", "pypdf", "lxml", "psycopg", "redis")


def test_a_served_app_applies_it_at_start_up_and_loads_only_what_it_uses(tmp_path: Path) -> None:
    result = probe("serve", str(tmp_path), *NOT_NEEDED_ON_SQLITE)
    assert result == {"applied": None, "own_mapping": True, "loaded": []}


def test_without_it_glibc_serves_the_next_large_block_from_the_heap() -> None:
    # The default this module exists to change: if glibc stopped doing it, the tuning could go.
    assert probe("none") == {"applied": None, "own_mapping": False, "loaded": []}


def test_the_operators_own_malloc_tuning_is_left_alone() -> None:
    result = probe("fix", MALLOC_ARENA_MAX="2")
    assert result == {"applied": False, "own_mapping": False, "loaded": []}
