"""`supportbot finetune eval`: a job's held-out cases, the fine-tuned model against the production arm(s).

Columns: the fine-tuned model with the production prompt, with the built-in short prompt, and each version the
production label serves with its own model. The fine-tuned columns are the very files `finetune promote`
would write (the template pinned to the model), in a throwaway copy of the prompt folder; every column is
graded by one grader model, so the figures compare the replies and nothing else.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..cases import Case
from ..config import Settings
from ..errors import Unprocessable
from ..evals import Column, EvalReport, EvalRunner
from ..prompts import TEMPLATE_SUFFIX, PromptRegistry, PromptVersion
from .promotion import pinned_text, short_prompt

EVAL_FILE = "eval.json"
CASES_FILE = "heldout.jsonl"


@dataclass(frozen=True)
class JobEval:
    """One `finetune eval` run: which job and model, on how many held-out cases, and the side-by-side report."""

    job_id: str
    fine_tuned_model: str
    cases_file: Path
    report: EvalReport
    ran_at: datetime

    def as_json(self) -> dict[str, Any]:
        """What `--json` prints and eval.json keeps."""
        return {"job": self.job_id, "fine_tuned_model": self.fine_tuned_model, "cases_file": str(self.cases_file),
                "held_out": len({case.id for case in self.report.cases}), "ran_at": self.ran_at.isoformat(),
                **self.report.as_json()}


def production_arms(prompts: Path, spec: str) -> list[PromptVersion]:
    """The versions `spec` (e.g. `support@production`) serves: every arm of a split, else the one version."""
    registry = PromptRegistry(prompts, interval=3600.0)
    name, _, label = spec.partition("@")
    split = registry.splits().get(name, {}).get(label or "production")
    try:
        arms = [registry.resolve(spec)] if split is None else [
            registry.exact(f"{name}@{version}") for version, _ in split.weights
            if version in registry.versions().get(name, {})]
    except LookupError as error:
        raise Unprocessable(f"no production prompt to compare with: {error}", code="unknown_prompt") from None
    if not arms:
        raise Unprocessable(f"{spec} serves no version that exists in {prompts}", code="unknown_prompt")
    return arms


def _free_version(taken: set[str], wanted: str) -> str:
    name, n = wanted, 1
    while name in taken:
        n += 1
        name = f"{wanted}{n}"
    return name


def comparison_columns(prompts: Path, spec: str, model: str, fine_tuned_model: str, job_id: str) -> list[Column]:
    """Write the fine-tuned versions into the copy `prompts` and name the columns, fine-tuned ones first."""
    arms = production_arms(prompts, spec)
    control = arms[0]
    taken = {path.name.removesuffix(TEMPLATE_SUFFIX) for path in (prompts / control.name).glob(f"*{TEMPLATE_SUFFIX}")}
    columns = []
    for base, wanted, origin in ((control, f"{control.version}-ft", control.ref),
                                 (short_prompt(), "short-ft", "the built-in short prompt")):
        version = _free_version(taken, wanted)
        taken.add(version)
        (prompts / control.name / f"{version}{TEMPLATE_SUFFIX}").write_text(
            pinned_text(base, fine_tuned_model, job_id, origin), encoding="utf-8")
        columns.append(Column(f"{control.name}@{version}", fine_tuned_model))
    return columns + [Column(arm.ref, arm.model or model) for arm in arms]


async def evaluate_job(settings: Settings, job_id: str, fine_tuned_model: str, cases: list[Case], cases_file: Path,
                       on_progress: Callable[[], object] | None = None) -> JobEval:
    """Run the held-out cases in every column (graded by the configured model) and return the report."""
    name = production_arms(settings.prompts_dir, settings.prompt)[0].name
    with tempfile.TemporaryDirectory(prefix="supportbot-ft-eval-") as tmp:
        prompts = Path(tmp) / "prompts"
        shutil.copytree(settings.prompts_dir / name, prompts / name)
        columns = comparison_columns(prompts, settings.prompt, settings.model, fine_tuned_model, job_id)
        runner = EvalRunner(settings.model_copy(update={"prompts_dir": prompts}), columns,
                            grader_model=settings.model)
        report = await runner.run(cases, on_progress=on_progress)
    return JobEval(job_id, fine_tuned_model, cases_file, report, datetime.now(UTC))


def save_eval(result: JobEval, directory: Path) -> Path:
    """Keep the result next to the job's held-out cases: `<data_dir>/finetune/<job>/eval.json`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / EVAL_FILE
    path.write_text(json.dumps(result.as_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def saved_eval(directory: Path) -> dict[str, Any] | None:
    """The last saved result, if any (and readable)."""
    path = directory / EVAL_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
