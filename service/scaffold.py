"""`supportbot init`: a starting prompts/ and knowledge/ folder, copied from the examples the package ships."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import Settings
from .shipped import shipped_dir

FOLDERS = ("prompts", "knowledge")


class FolderInUse(Exception):
    """`init` would write into a prompts/ or knowledge/ folder that already has files."""


def planned_copies(target: Path) -> list[tuple[Path, Path]]:
    """(example file, where init writes it) for every shipped example file."""
    copies = []
    for name in FOLDERS:
        source = shipped_dir(name)
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                copies.append((path, target / name / path.relative_to(source)))
    return copies


def write_examples(target: Path) -> list[Path]:
    """Copy the example prompts and knowledge into `target`; refuse, writing nothing, if either folder has files."""
    # A folder that already has files is someone's own work: mixing the Acme examples into a real
    # knowledge base would put them in front of real customers, so init only starts from empty.
    in_use = [f"{target / name}/" for name in FOLDERS if (target / name).exists() and not _empty_dir(target / name)]
    if in_use:
        raise FolderInUse(f"{' and '.join(in_use)} already {'has' if len(in_use) == 1 else 'have'} files; "
                          "init overwrites nothing and writes only into missing or empty folders: "
                          "move them away, or give init another directory")
    written = []
    for source, destination in planned_copies(target):
        destination.parent.mkdir(parents=True, exist_ok=True)
        # "x" refuses to replace a file that appeared since the check above.
        with destination.open("xb") as out:
            out.write(source.read_bytes())
        written.append(destination)
    return written


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def init(target: Path, settings: Settings) -> int:
    """`supportbot init DIR`: write the examples, then print the commands that start the service."""
    try:
        written = write_examples(target)
    except FolderInUse as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = {name: sum(1 for path in written if path.relative_to(target).parts[0] == name) for name in FOLDERS}
    print(f"wrote {counts['prompts']} files to {target / 'prompts'}/ and {counts['knowledge']} to "
          f"{target / 'knowledge'}/: the examples, for a made-up product (Acme Analytics); edit them into yours")
    for name in FOLDERS:
        if f"{name}_dir" not in settings.model_fields_set:
            continue  # the default: the folder in the directory the service is started in
        configured: Path = getattr(settings, f"{name}_dir")
        if os.path.abspath(target / configured) != os.path.abspath(target / name):
            print(f"note: SUPPORTBOT_{name.upper()}_DIR is set: the service reads {configured}, not these files")
    print("next:")
    if Path.cwd().resolve() != target.resolve():
        print(f"  cd {target}")
    print("  supportbot prompt check    # validates the files; run it after each edit\n"
          "  supportbot db upgrade      # creates the database: data/supportbot.db unless SUPPORTBOT_DATABASE_URL\n"
          "  supportbot serve           # http://127.0.0.1:8000/ has a chat demo, /admin the review pages\n"
          "Name your company and product with SUPPORTBOT_COMPANY_NAME and SUPPORTBOT_PRODUCT_NAME.")
    return 0
