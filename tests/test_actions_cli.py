"""`supportbot actions check|try`: what a team sees while writing action files, against a real order API."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.actions_cli import add_parser, run
from service.config import Settings

from .conftest import make_settings
from .fake_team_api import FakeTeamAPI, cancel_action, known_orders, order_action, running_team_api, write_action

TOKEN = "orders-token-c11-5ecret"
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTeamAPI]:
    with running_team_api(token=TOKEN) as api:
        yield api


@pytest.fixture
def api(served: FakeTeamAPI) -> FakeTeamAPI:
    served.clear()
    served.orders = known_orders()
    return served


@pytest.fixture
def actions_dir(tmp_path: Path, api: FakeTeamAPI) -> Path:
    root = tmp_path / "actions"
    write_action(root, order_action(f"{api.url}/orders/{{order_id}}"))
    write_action(root, cancel_action(api.url), "cancel_order.yml")
    return root


@pytest.fixture
def cli(tmp_path: Path, actions_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """`supportbot actions ...` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setenv("ORDERS_API_TOKEN", TOKEN)
    parser = argparse.ArgumentParser(prog="supportbot")
    add_parser(parser.add_subparsers(dest="command", required=True))

    def invoke(*args: str, root: Path = actions_dir) -> tuple[int, str, str]:
        settings: Settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}", actions_dir=root)
        code = run(parser.parse_args(["actions", *args]), settings)
        out, err = capsys.readouterr()
        return code, out, err
    return invoke


def test_check_lists_every_action(cli: Cli, actions_dir: Path, api: FakeTeamAPI) -> None:
    code, out, _ = cli("check")

    assert code == 0
    assert out.splitlines() == [
        f"actions in {actions_dir}:",
        f"  cancel_order  POST {api.url}/orders/{{order_id}}/cancel",
        "      identity optional, side effects yes, fields status, refund, error, message",
        f"  get_order_status  GET {api.url}/orders/{{order_id}}",
        "      identity optional, side effects no, fields status, carrier, eta",
        "2 actions, 0 problems",
    ]
    assert TOKEN not in out
    assert api.received == []  # check calls nothing


def test_check_names_the_broken_file_and_fails(cli: Cli, actions_dir: Path, api: FakeTeamAPI) -> None:
    broken = write_action(actions_dir, order_action("ftp://files.example/{order_id}", name="get_invoice"))

    code, out, _ = cli("check")

    assert code == 1
    assert re.search(rf"^  {re.escape(str(broken))}:\d+: request.url: only http:// and https:// URLs are allowed$",
                     out, re.MULTILINE), out
    assert "2 actions, 1 problem" in out


def test_check_names_a_missing_environment_variable(cli: Cli, actions_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERS_API_TOKEN")

    code, out, _ = cli("check")

    assert code == 1
    assert (f"  {actions_dir / 'get_order_status.yaml'}: request.headers.Authorization: environment variable "
            "ORDERS_API_TOKEN is not set") in out
    assert "2 actions, 2 problems" in out


def test_check_flags_a_secret_written_into_the_file(cli: Cli, actions_dir: Path, api: FakeTeamAPI) -> None:
    action = order_action(f"{api.url}/orders/{{order_id}}", name="get_invoice")
    action["request"]["headers"] = {"X-Api-Key": "live-key-123", "Accept-Language": "en"}
    path = write_action(actions_dir, action)

    code, out, _ = cli("check")

    assert code == 1
    assert (f"  {path}: request.headers.X-Api-Key: looks like a secret written into the file; read it from the "
            "environment with ${VARIABLE}") in out
    assert "Accept-Language" not in out.split("problems:")[1]
    assert "3 actions, 1 problem" in out


def test_check_without_a_directory_is_fine(cli: Cli, tmp_path: Path) -> None:
    code, out, _ = cli("check", root=tmp_path / "none")

    assert code == 0
    assert out.strip() == f"no actions: {tmp_path / 'none'} does not exist (SUPPORTBOT_ACTIONS_DIR)"


def test_the_directory_comes_from_supportbot_actions_dir(monkeypatch: pytest.MonkeyPatch, actions_dir: Path) -> None:
    monkeypatch.setenv("SUPPORTBOT_ACTIONS_DIR", str(actions_dir))

    assert Settings(_env_file=None).actions_dir == actions_dir  # type: ignore[call-arg]


def test_try_prints_the_masked_request_and_what_the_model_gets(cli: Cli, api: FakeTeamAPI) -> None:
    code, out, err = cli("try", "get_order_status", '{"order_id": "A-1042"}', "--user", "user-7")

    assert code == 0, err
    lines = out.splitlines()
    assert lines[:4] == [f"request: GET {api.url}/orders/A-1042", "  Accept: application/json",
                         "  Authorization: Bearer ***", "  X-Supportbot-User: user-7"]
    assert re.fullmatch(r"status: ok \(HTTP 200, \d+ ms\)", lines[4])
    assert lines[5:] == ["the model gets:",
                         '  {"status":"ok","data":{"status":"shipped","carrier":"DHL","eta":"2026-12-05"}}']
    assert TOKEN not in out + err
    (received,) = api.received
    assert received.headers["authorization"] == f"Bearer {TOKEN}"
    assert received.headers["x-supportbot-user"] == "user-7"


def test_try_a_rejection_is_a_normal_answer(cli: Cli) -> None:
    code, out, _ = cli("try", "get_order_status", '{"order_id": "A-9999"}')

    assert code == 0
    assert re.search(r"^status: rejected \(HTTP 404, \d+ ms\): HTTP 404$", out, re.MULTILINE)
    assert '"status":"rejected","http_status":404' in out


def test_try_a_side_effect_action_calls_it_for_real(cli: Cli, api: FakeTeamAPI) -> None:
    code, out, _ = cli("try", "cancel_order", '{"order_id": "A-1043", "reason": "twice"}')

    assert code == 0
    assert '  body: {"reason": "twice"}' in out
    assert "note: this action has side effects and was called for real" in out
    assert [r.json() for r in api.cancels()] == [{"reason": "twice"}]


def test_try_failure_exits_1_with_the_short_error(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                                 api: FakeTeamAPI) -> None:
    monkeypatch.setenv("ORDERS_API_TOKEN", "wrong")

    code, out, _ = cli("try", "get_order_status", '{"order_id": "A-1042"}')

    assert code == 1
    assert re.search(r"^status: failed \(HTTP 401, \d+ ms\): HTTP 401$", out, re.MULTILINE)
    assert out.splitlines()[-1] == '  {"status":"failed","error":"HTTP 401"}'


def test_try_missing_secret_makes_no_request(cli: Cli, monkeypatch: pytest.MonkeyPatch, api: FakeTeamAPI) -> None:
    monkeypatch.delenv("ORDERS_API_TOKEN")

    code, out, _ = cli("try", "get_order_status", '{"order_id": "A-1042"}')

    assert code == 1
    assert out.splitlines()[0] == "request: not made"
    assert "missing environment variable ORDERS_API_TOKEN" in out
    assert api.received == []


def test_try_invalid_arguments_exit_1(cli: Cli, api: FakeTeamAPI) -> None:
    code, out, _ = cli("try", "get_order_status", '{"order_id": 1042}')

    assert code == 1
    last = json.loads(out.splitlines()[-1])
    assert last["status"] == "invalid_arguments" and last["errors"] == "order_id: must be of type string"
    assert api.received == []


@pytest.mark.parametrize(("args", "message"), [
    (("try", "get_invoice", "{}"), "error: no valid action named 'get_invoice'"),
    (("try", "get_order_status", "{order_id: A-1042}"), "error: the arguments are not valid JSON"),
])
def test_try_misuse_exits_2(cli: Cli, api: FakeTeamAPI, args: tuple[str, ...], message: str) -> None:
    code, out, err = cli(*args)

    assert code == 2
    assert err.startswith(message)
    assert out == "" and api.received == []
