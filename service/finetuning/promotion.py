"""A fine-tuned model as a prompt version: the template pinned to the model, and the label split that serves it.

`supportbot finetune promote` writes `prompts/<name>/<version>.md.j2` (never over an existing one) and, when
asked, gives it a share of a label's traffic by rewriting only that label's line of `labels.yaml`.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import yaml

from ..errors import ConfigError, Conflict, Unprocessable
from ..prompts import LABELS_FILE, TEMPLATE_SUFFIX, Label, PromptVersion, Split, parse_labels_file, parse_prompt_file
from ..shipped import PACKAGE_DIR

SHORT_PROMPT = PACKAGE_DIR / "templates" / "finetune" / f"short{TEMPLATE_SUFFIX}"


def short_prompt() -> PromptVersion:
    """The built-in short prompt (shipped in the package): a fine-tuned model needs fewer words."""
    return parse_prompt_file(SHORT_PROMPT)


def pinned_text(base: PromptVersion, model: str, job_id: str, origin: str) -> str:
    """`base`'s template with `model` in its front matter, the rest of the front matter kept."""
    described = f"Fine-tuned model of job {job_id}, with the words of {origin}"
    meta: dict[str, object] = {"description": f"{described}: {base.description}" if base.description else described,
                               "model": model}
    if base.temperature is not None:
        meta["temperature"] = base.temperature
    if base.max_tokens is not None:
        meta["max_tokens"] = base.max_tokens
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n{base.source}"


def _check_name(kind: str, name: str) -> None:
    if not name or Path(name).name != name or name.startswith("."):
        raise Unprocessable(f"{kind} {name!r} is not a plain name (letters, digits, . _ -)", code="invalid_version")


def write_version(prompts_dir: Path, prompt: str, version: str, text: str) -> Path:
    """Create `prompts_dir/prompt/version.md.j2` after the prompt loader accepts it; never overwrites one."""
    _check_name("prompt", prompt)
    _check_name("version", version)
    target = prompts_dir / prompt / f"{version}{TEMPLATE_SUFFIX}"
    if target.exists():
        raise Conflict(f"{target} already exists: pick another --version (a version is never overwritten)",
                       code="version_exists")
    with tempfile.TemporaryDirectory(prefix="supportbot-promote-") as tmp:
        trial = Path(tmp) / prompt / target.name
        trial.parent.mkdir()
        trial.write_text(text, encoding="utf-8")
        try:
            parse_prompt_file(trial)
        except ConfigError as error:
            raise Unprocessable(f"the new version would not load: {error}", code="invalid_version") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with target.open("x", encoding="utf-8") as out:  # "x": a version written meanwhile is not overwritten
            out.write(text)
    except FileExistsError:
        raise Conflict(f"{target} already exists", code="version_exists") from None
    return target


def split_with(current: Label, version: str, share: int) -> Split:
    """`current` (a version or a split) with `version` added at `share` % of the traffic, others in proportion."""
    if not 0 < share < 100:
        raise Unprocessable("--share is a percentage above 0 and below 100", code="invalid_share")
    weights = current.weights if isinstance(current, Split) else ((current, 1),)
    weights = tuple((v, w) for v, w in weights if v != version)
    total = sum(w for _, w in weights)
    if all(w * (100 - share) % total == 0 for _, w in weights):  # readable as percentages: {v2: 90, v9: 10}
        return Split((*((v, w * (100 - share) // total) for v, w in weights), (version, share)))
    scaled = [(v, w * (100 - share)) for v, w in weights] + [(version, share * total)]
    divisor = math.gcd(*(w for _, w in scaled))
    return Split(tuple((v, w // divisor) for v, w in scaled))


def label_line(label: str, split: Split) -> str:
    """The labels.yaml line for a split: `production: {v2: 90, v9: 10}`."""
    return f"{label}: {{{', '.join(f'{version}: {weight}' for version, weight in split.weights)}}}"


def current_label(prompts_dir: Path, prompt: str, label: str) -> Label | None:
    """What `label` serves now (None when labels.yaml or the label is missing)."""
    path = prompts_dir / prompt / LABELS_FILE
    return parse_labels_file(path).get(label) if path.is_file() else None


def _end(node: yaml.Node) -> int:
    """Where a label's value ends: a block mapping's last weight, not the comments or blank lines after it."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return _end(node.value[-1][1])
    return int(node.end_mark.index)


def set_split(prompts_dir: Path, prompt: str, label: str, split: Split) -> Path:
    """Rewrite `label`'s entry in labels.yaml as `split`, keeping every other line (labels and comments)."""
    path = prompts_dir / prompt / LABELS_FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    before = parse_labels_file(path) if path.is_file() else {}
    line = label_line(label, split)
    root = yaml.compose(text) if text.strip() else None
    span = next(((key.start_mark.index, _end(value)) for key, value in root.value if key.value == label),
                None) if isinstance(root, yaml.MappingNode) else None
    if span is not None:
        replaced = text[span[0]:span[1]]
        edited = text[:span[0]] + line + ("\n" if replaced.endswith("\n") else "") + text[span[1]:]
    else:
        edited = text + ("\n" if text and not text.endswith("\n") else "") + line + "\n"
    trial = path.with_name(f".{LABELS_FILE}.promote")
    trial.write_text(edited, encoding="utf-8")
    try:
        after = parse_labels_file(trial)
    except ConfigError:
        trial.unlink()
        raise
    expected = {**before, label: split}
    if after != expected:
        trial.unlink()
        raise Unprocessable(f"could not edit {path} safely; add this line yourself: {line}", code="labels_not_edited")
    os.replace(trial, path)
    return path
