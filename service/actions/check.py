"""`supportbot actions check`: every action file parsed, and every secret it reads present, before serving."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from .base import ActionSpec
from .files import SUFFIXES, assemble, header_variables, parse_action

_SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|password|api-?key|^x-key$", re.IGNORECASE)


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
        problems.extend(_environment_problems(spec, environ))
    return list(by_name.values()), problems


def _environment_problems(spec: ActionSpec, environ: Mapping[str, str]) -> list[ConfigError]:
    """Variables missing from the environment, and secrets written into the file itself (they would be
    committed with it, and shown unmasked by `actions try`)."""
    problems = []
    variables = header_variables(spec)
    for header in spec.request.headers:
        where = f"request.headers.{header}"
        if header not in variables and _SECRET_HEADER.search(header):
            problems.append(ConfigError(str(spec.path), None, f"{where}: looks like a secret written into the "
                                                              "file; read it from the environment with ${VARIABLE}"))
        for variable in variables.get(header, ()):
            if variable not in environ:
                problems.append(ConfigError(str(spec.path), None,
                                            f"{where}: environment variable {variable} is not set"))
    return problems
