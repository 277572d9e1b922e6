"""Folders that ship with the code: the migrations, and the example prompts and knowledge `supportbot init` copies."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# Folder at the top of the repository -> where the wheel puts it inside the package. Must match the
# package-dir mapping in pyproject.toml (tests/test_package.py installs a built wheel to check it).
SHIPPED = {
    "migrations": PACKAGE_DIR / "migrations",
    "prompts": PACKAGE_DIR / "examples" / "prompts",
    "knowledge": PACKAGE_DIR / "examples" / "knowledge",
}


class IncompleteInstall(Exception):
    """A folder the code ships with is missing: the package was installed without its data files."""


def shipped_dir(name: str) -> Path:
    """The shipped folder `name` (migrations, prompts or knowledge), installed or in a source checkout."""
    packaged = SHIPPED[name]
    if packaged.is_dir():
        return packaged
    # An editable install runs the package from the repository, where these folders stay at the top,
    # next to pyproject.toml, because that is where people edit them.
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    raise IncompleteInstall(f"{packaged} is missing: this supportbot installation is incomplete; "
                            "reinstall it from a wheel built with `pip wheel .` in a checkout")
