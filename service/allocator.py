"""The C allocator told to hand large freed blocks back to the system (glibc), once per serving process.

glibc serves a block of 128 KiB or more from a mapping of its own, returned to the system when freed, but each
such free raises that threshold to the freed block's size (up to 32 MiB). Loading lingua's language models
allocates and frees many large buffers, so after start-up later large blocks come from the heap, and the heap's
freed space stays resident, by a different amount each start (an idle server at 480-517 MB). With the threshold
fixed it idles at 401-403 MB every time (bench/findings.md 0j has how it was measured).

An operator's own tuning wins: with any MALLOC_* variable in the environment nothing is changed. Elsewhere
than glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>; setting it also stops the threshold from moving
MMAP_THRESHOLD_BYTES = 1 << 20  # blocks of 1 MiB and more get their own mapping, returned when freed


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD_BYTES; True when it was set."""
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not done:
        log.warning("could not fix the allocator's mmap threshold: idle memory may be higher")
    return done
