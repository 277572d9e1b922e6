"""`supportbot actions check`: every action file parsed, and every secret it reads present, before serving."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from .base import ActionSpec
from .files import SUFFIXES, assemble, header_variables, parse_action


def action_paths(root: Path) -> list[Path]:
    """The action files under `root` (*.yaml, *.yml), sorted; none when it does not exist."""
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir()
                  if path.is_file() and path.suffix in SUFFIXES and not path.name.startswith("."))


def check_actions(root: Path, environ: Mapping[str, str]) -> tuple[list[ActionSpec], list[ConfigError]]:
    """The valid actions under `root`, and the problems: files that do not parse, names used twice, and
    `${VAR}` header variables missing from `environ` (that action would fail on every call)."""
    parsed: list[tuple[Path, ActionSpec]] = []
    problems: list[ConfigError] = []
    for path in action_paths(root):
        try:
            parsed.append((path, parse_action(path)))
        except ConfigError as error:
            problems.append(error)
        except (OSError, UnicodeDecodeError) as error:
            problems.append(ConfigError(str(path), None, f"cannot read: {error}"))
    by_name, duplicates = assemble(parsed)
    problems.extend(duplicates)
    for spec in by_name.values():
        for header, variables in header_variables(spec).items():
            for variable in variables:
                if variable not in environ:
                    problems.append(ConfigError(str(spec.path), None, f"request.headers.{header}: environment "
                                                                      f"variable {variable} is not set"))
    return list(by_name.values()), problems
