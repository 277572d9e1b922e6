"""`supportbot prompt list|show|check`: what people editing prompt and knowledge files run."""

from __future__ import annotations

import difflib
import logging
import sys
from pathlib import Path

from .config import Settings, secret_key
from .errors import ConfigError
from .guard import make_canary
from .knowledge import KnowledgeStore
from .languages import LANGUAGES_FOLDER, LanguageStore
from .policies import PolicyStore
from .prompts import PromptRegistry, RenderedPrompt, estimate_tokens
from .redact import find_secrets


def _load(settings: Settings) -> tuple[PromptRegistry, KnowledgeStore]:
    return PromptRegistry(settings.prompts_dir, interval=0), KnowledgeStore(settings.knowledge_dir, interval=0)


def list_prompts(settings: Settings) -> int:
    """Print every prompt version with its labels and description."""
    registry, _ = _load(settings)
    labels, splits = registry.labels(), registry.splits()
    for name, versions in sorted(registry.versions().items()):
        split = splits.get(name, {})
        for version in sorted(versions.values(), key=lambda v: v.version):
            tags = [label for label, target in labels.get(name, {}).items()
                    if target == version.version and label not in split]
            tags += [label for label, weights in split.items() if version.version in dict(weights.weights)]
            served = " (served)" if version.ref in _served_arms(registry, settings) else ""
            tag_text = f" [{', '.join(tags)}]" if tags else ""
            print(f"{version.ref:<20}{tag_text}{served}  {version.description}")
        for label, weights in split.items():
            # A split label serves several versions: each new conversation gets one of them (its arm).
            print(f"{name} {label}: {weights.describe()}")
    return 0


def _served_arms(registry: PromptRegistry, settings: Settings) -> set[str]:
    """The versions the configured prompt serves: one, or every arm of a split label."""
    name, _, label = settings.prompt.partition("@")
    split = registry.splits().get(name, {}).get(label or "production")
    served = _served(registry, settings)
    return ({f"{name}@{version}" for version, _ in split.weights} if split else set()) | ({served} if served else set())


def _served(registry: PromptRegistry, settings: Settings) -> str | None:
    try:
        return registry.resolve(settings.prompt).ref
    except LookupError:
        return None


def assemble_for_display(
    settings: Settings, registry: PromptRegistry, store: KnowledgeStore, ref: str, query: str = "",
    canary: str | None = None,
) -> tuple[RenderedPrompt, str]:
    """The assembled prompt of a version, and which knowledge went in.

    A knowledge base too large to inline is cut to its top-k by BM25 here (no embeddings, no database), so in
    hybrid mode a turn may pick other entries; the header says which. Raises LookupError for an unknown version.
    """
    version = registry.resolve(ref)
    knowledge = store.current()
    if knowledge.size_chars <= settings.knowledge_inline_max_chars:
        issues, complete, how = knowledge.issues, True, f"all {len(knowledge.issues)} known issues"
    else:
        issues = tuple(i for i, _ in knowledge.search(query, settings.knowledge_top_k))
        complete = False
        how = f"top {settings.knowledge_top_k} of {len(knowledge.issues)} known issues by BM25 for query {query!r}"
    rendered = registry.assemble(version, knowledge, issues, complete=complete,
                                 company=settings.company_name, product=settings.product_name, canary=canary)
    return rendered, how


def prompt_diff(a: RenderedPrompt, b: RenderedPrompt) -> str:
    """Unified diff between two assembled prompts."""
    return "".join(difflib.unified_diff(a.text.splitlines(keepends=True), b.text.splitlines(keepends=True),
                                        fromfile=a.ref, tofile=b.ref))


def show_prompt(settings: Settings, ref: str | None, query: str) -> int:
    """Print the assembled system prompt of a version, with its sha256 and a token estimate."""
    registry, store = _load(settings)
    try:
        rendered, how = assemble_for_display(settings, registry, store, ref or settings.prompt, query,
                                             canary=make_canary(secret_key(settings)))
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"# {rendered.ref} sha256={rendered.sha256} ~{estimate_tokens(rendered.text)} tokens "
          f"(estimate: characters / 4); knowledge: {how}", file=sys.stderr)
    sys.stdout.write(rendered.text)
    return 0


def find_problems(settings: Settings, registry: PromptRegistry, store: KnowledgeStore) -> list[ConfigError]:
    """Every problem in the prompt, label and knowledge files, with file and line."""
    problems = [ConfigError(str(folder), None, f"no such folder: `supportbot init` writes a starting one here "
                                               f"(or set SUPPORTBOT_{name.upper()}_DIR)")
                for name, folder in (("prompts", settings.prompts_dir), ("knowledge", settings.knowledge_dir))
                if not folder.is_dir()]
    problems += list(registry.errors()) + list(store.errors())
    knowledge = store.current()
    for versions in registry.versions().values():
        for version in versions.values():
            try:
                registry.render(version, {"company": settings.company_name, "product": settings.product_name,
                                          "known_issues": [i.as_context() for i in knowledge.issues],
                                          "knowledge_complete": True, "language": "English"})
            except ConfigError as error:
                problems.append(error)
    try:
        registry.resolve(settings.prompt)
    except LookupError as error:
        problems.append(ConfigError("SUPPORTBOT_PROMPT", None, str(error)))
    return problems + secret_problems(settings)


def secret_problems(settings: Settings) -> list[ConfigError]:
    """Key-like strings in prompt or knowledge files: secrets belong in the environment, never in files."""
    problems = []
    files = [*sorted(settings.prompts_dir.glob("**/*")), *sorted(settings.knowledge_dir.glob("**/*"))]
    for path in files:
        if not path.is_file() or path.suffix not in {".j2", ".md", ".yaml", ".yml", ".txt"}:
            continue
        for line, masked in find_secrets(path.read_text(encoding="utf-8", errors="replace")):
            problems.append(ConfigError(str(path), line, f"looks like a secret ({masked}): keep keys out of files "
                                                         "the model sees; use an environment variable"))
    return problems


def rule_file_problems(settings: Settings) -> tuple[list[ConfigError], list[str], list[str]]:
    """Problems in policies.yaml and the language files, warnings (a configured language with no file), codes."""
    policies = PolicyStore(settings.knowledge_dir, interval=0)
    languages = LanguageStore(settings.knowledge_dir, interval=0,
                              policy_names=lambda: {rule.name for rule in policies.rules()})
    found = languages.languages()
    problems = [*policies.errors(), *languages.errors()]
    broken = {Path(problem.path).stem for problem in languages.errors()}
    warnings = [f"SUPPORTBOT_LANGUAGES lists {code!r} but {settings.knowledge_dir / LANGUAGES_FOLDER / code}.yaml "
                f"does not exist: its visitors get English texts and only the English escalation rules"
                for code in settings.languages if code not in found and code not in broken and code != "en"]
    return problems, warnings, sorted(found)


def check_files(settings: Settings) -> int:
    """Report problems; exit status 1 when there is any."""
    # The report below names every problem; the loaders' own log lines would only repeat them.
    logging.getLogger("service.watched").setLevel(logging.CRITICAL)
    registry, store = _load(settings)
    rule_problems, warnings, codes = rule_file_problems(settings)
    problems = find_problems(settings, registry, store) + rule_problems
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    versions = sum(len(v) for v in registry.versions().values())
    print(f"{versions} prompt versions, {len(store.current().issues)} known issues, "
          f"{len(codes)} language files ({', '.join(codes) or 'none'}): "
          f"{'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0
