"""Where a turn's CPU goes, measured piece by piece in process (no HTTP, no upstream).

- the whole domain turn with the offline provider (`start_turn` + `Turn.run`): prompt, retrieval,
  escalation checks and both database writes;
- the two writes alone (`ConversationLog.begin_turn` + `record_reply`) on SQLite with the shipped
  `synchronous=FULL`, with `synchronous=NORMAL`, and on PostgreSQL;
- the openai client's request preparation (`_transform`) for a conversation of 0, 4 and 18 earlier
  messages: the passthrough pays it too.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .profiles import QUESTIONS

TURNS = 300


def _settings(url: str, data_dir: Path) -> Any:
    from service.config import Settings

    # No API key is passed: the offline provider answers, so no upstream is involved.
    return Settings(data_dir=data_dir, database_url=url, log_level="WARNING", max_turns=100_000)


def _reply_record(conversation_id: str, reply_to: int) -> Any:
    from service.store import ReplyRecord

    return ReplyRecord(
        conversation_id=conversation_id, reply_to_id=reply_to, content="**Slow dashboard loads**\n\n" + "Open the "
        "dashboard settings and turn on cached results. " * 6, origin="model", status="ok", provider="openai",
        model_requested="gpt-4o-mini", model_reported="gpt-4o-mini-2024-07-18", prompt_name="support",
        prompt_version="v2", prompt_sha256="0" * 64, prompt_text="You are a helpful support agent. " * 120,
        tokens_in=1200, tokens_out=96, cost_usd=0.0002, latency_ms=50, known_issue="slow-dashboard-loads")


def storage_turns(url: str, data_dir: Path, synchronous: str | None = None) -> dict[str, Any]:
    """CPU per turn of the two writes of a turn (and one conversation per 10 turns)."""
    from sqlalchemy import event

    from service.db import upgrade
    from service.runtime import Runtime

    upgrade(url)
    runtime = Runtime.build(_settings(url, data_dir))
    if synchronous:
        def pragma(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()

        event.listen(runtime.log.engine, "connect", pragma)
    log = runtime.log

    def one_turn(n: int, state: dict[str, Any]) -> None:
        if n % 10 == 0:
            state["conversation"] = log.create_conversation(None).id
        start = log.begin_turn(state["conversation"], QUESTIONS[n % len(QUESTIONS)], None, max_turns=100_000,
                               history_limit=20)
        log.record_reply(_reply_record(state["conversation"], start.user_message.id))

    state: dict[str, Any] = {}
    for n in range(20):
        one_turn(n, state)
    result = _timed(lambda n: one_turn(n, state))
    log.engine.dispose()
    return result


def _timed(step: Callable[[int], Any]) -> dict[str, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(TURNS):
        step(n)
    return {"turns": TURNS, "cpu_ms_per_turn": round((time.process_time() - cpu) / TURNS * 1000, 3),
            "wall_ms_per_turn": round((time.perf_counter() - wall) / TURNS * 1000, 3)}


def domain_turns(url: str, data_dir: Path) -> dict[str, Any]:
    """CPU per turn of the whole turn pipeline with the offline provider (no HTTP, no openai client)."""
    from service.db import upgrade
    from service.runtime import Runtime
    from service.turns import start_turn

    upgrade(url)
    runtime = Runtime.build(_settings(url, data_dir))

    async def turns() -> dict[str, Any]:
        conversation = ""
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(TURNS + 20):
            if n == 20:
                cpu, wall = time.process_time(), time.perf_counter()
            if n % 10 == 0:
                conversation = runtime.log.create_conversation(None).id
            turn = await start_turn(runtime, conversation, QUESTIONS[n % len(QUESTIONS)])
            await turn.run()
        return {"turns": TURNS, "cpu_ms_per_turn": round((time.process_time() - cpu) / TURNS * 1000, 3),
                "wall_ms_per_turn": round((time.perf_counter() - wall) / TURNS * 1000, 3)}

    result = asyncio.run(turns())
    runtime.log.engine.dispose()
    return result


def openai_transform(system_prompt: str) -> list[dict[str, Any]]:
    """CPU of the openai client's request preparation, by length of the conversation sent."""
    try:
        from openai._utils._transform import async_maybe_transform
        from openai.types.chat import completion_create_params
    except ImportError as error:
        return [{"error": f"openai internals moved: {error}"}]
    from service.providers.base import ESCALATE_TOOL

    history: list[dict[str, str]] = []
    for question in QUESTIONS[:9]:
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": "An answer. " * 40}]
    results = []
    for earlier in (0, 4, 18):
        params = {"model": "gpt-4o-mini", "max_tokens": 400, "temperature": 0.2, "tools": [ESCALATE_TOOL],
                  "messages": [{"role": "system", "content": system_prompt}, *history[:earlier],
                               {"role": "user", "content": QUESTIONS[0]}]}

        async def transform(p: dict[str, Any] = params) -> None:
            for _ in range(100):
                await async_maybe_transform(p, completion_create_params.CompletionCreateParamsNonStreaming)

        cpu = time.process_time()
        asyncio.run(transform())
        results.append({"earlier_messages": earlier, "cpu_ms": round((time.process_time() - cpu) / 100 * 1000, 3)})
    return results


def export_profile(database: Path, work: Path) -> dict[str, Any]:
    """py-spy samples of `supportbot export --select all` on the large SQLite log (a separate, extra run)."""
    from .profiling import profile_command
    from .targets import VENV_BIN, supportbot_env

    env = supportbot_env(work / "export-profile", f"sqlite:///{database}", "http://127.0.0.1:9/v1")
    out = work / "export-profile.jsonl"
    result = profile_command([str(VENV_BIN / "supportbot"), "export", "--format", "openai-chat", "--select", "all",
                              "--out", str(out)], env, work / "profile-export.txt", "Exporter.lines")
    out.unlink(missing_ok=True)
    return result


def run_components(work: Path, system_prompt: str, postgres_url: str | None,
                   log: Callable[[str], None], export_db: Path | None = None) -> dict[str, Any]:
    """Every component figure; PostgreSQL ones only when a database URL is given."""
    work.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}-{int(time.time())}"
    log("components: domain turn, storage, openai request preparation")
    results: dict[str, Any] = {
        "domain_turn_sqlite": domain_turns(f"sqlite:///{work / f'domain-{stamp}.db'}", work),
        "storage_sqlite_full": storage_turns(f"sqlite:///{work / f'full-{stamp}.db'}", work),
        "storage_sqlite_normal": storage_turns(f"sqlite:///{work / f'normal-{stamp}.db'}", work, "NORMAL"),
        "openai_transform": openai_transform(system_prompt),
    }
    if postgres_url:
        results["storage_postgresql"] = storage_turns(postgres_url, work)
    if export_db is not None and export_db.exists():
        log(f"components: profiling the export of {export_db.name}")
        results["export_profile"] = export_profile(export_db, work)
    return results
