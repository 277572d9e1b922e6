"""Write deploy/kubernetes/configmap-prompts.yaml and configmap-knowledge.yaml from prompts/ and knowledge/.

The same ConfigMaps `kubectl create configmap NAME --from-file=FOLDER/` makes, with labels and a header; run it
after editing the example prompts or knowledge (tests/test_deploy_kubernetes.py fails while they differ):

    python scripts/kubernetes-configmaps.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "kubernetes"
# file -> [(ConfigMap name, folder, header)]
CONFIG_MAPS: dict[str, list[tuple[str, str, str]]] = {
    "configmap-prompts.yaml": [
        ("supportbot-prompt-support", "prompts/support",
         "The `support` prompt's versions and labels, mounted at /app/prompts/support (one ConfigMap per prompt\n"
         "folder). Edits reach running pods within about a minute (files are reloaded)."),
    ],
    "configmap-knowledge.yaml": [
        ("supportbot-knowledge", "knowledge",
         "Known issues (knowledge/*.md), mounted at /app/knowledge/entries, and policies.yaml at /app/knowledge."),
        ("supportbot-knowledge-languages", "knowledge/languages",
         "Per-language escalation rules and texts, mounted at /app/knowledge/languages."),
    ],
}


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line file contents as YAML block scalars, so the ConfigMaps read like the files."""


def _text(dumper: yaml.SafeDumper, value: str) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_LiteralDumper.add_representer(str, _text)


def config_map(name: str, folder: str, header: str) -> str:
    """One ConfigMap of the folder's files (not its subfolders), with a comment header."""
    data = {path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / folder).iterdir())
            if path.is_file()}
    document = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "supportbot"}}, "data": data}
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    comment += f"# Made from {folder}/ by scripts/kubernetes-configmaps.py (as kubectl create configmap {name} " \
               f"--from-file={folder}/ would).\n"
    return comment + yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True, width=1000)


def main() -> None:
    for file, maps in CONFIG_MAPS.items():
        (OUT / file).write_text("---\n".join(config_map(*spec) for spec in maps), encoding="utf-8")
        print(f"wrote {(OUT / file).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
