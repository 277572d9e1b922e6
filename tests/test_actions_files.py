"""Action files: strict validation naming file, line and field; a watched directory that never serves a broken
file, refuses a second action with the same name, and treats a missing directory as no actions."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.actions.files import ActionFiles, header_variables, parse_action
from service.config import PROJECT_ROOT
from service.errors import ConfigError

from .fake_team_api import order_action as team_order_action

EXAMPLE = PROJECT_ROOT / "actions" / "get_order_status.yaml.example"


def order_action(**changes: Any) -> dict[str, Any]:
    """The issue's get_order_status action as data; `changes` replace top-level keys (None removes one)."""
    return team_order_action("https://api.acme.example/orders/{order_id}", **changes)


def write(path: Path, action: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(action if isinstance(action, str) else yaml.safe_dump(action, sort_keys=False), encoding="utf-8")
    return path


def _touch(path: Path, stamp: int) -> None:
    os.utime(path, ns=(stamp, stamp))


def with_request(**changes: Any) -> dict[str, Any]:
    request = copy.deepcopy(order_action()["request"])
    request.update(changes)
    return order_action(request=request)


def with_header(name: str, value: Any) -> dict[str, Any]:
    return with_request(headers={name: value})


def test_the_shipped_example_is_the_issue_format_and_parses(tmp_path: Path) -> None:
    path = tmp_path / "get_order_status.yaml"
    shutil.copy(EXAMPLE, path)

    spec = parse_action(path)

    assert spec.name == "get_order_status"
    assert spec.request.method == "GET"
    assert spec.request.url == "https://api.acme.example/orders/{order_id}"
    assert spec.request.headers == {"Authorization": "Bearer ${ORDERS_API_TOKEN}"}
    assert spec.request.timeout == 5.0
    assert (spec.identity, spec.side_effects, spec.fields, spec.max_bytes) == (
        "optional", False, ("status", "carrier", "eta"), 4000)
    assert header_variables(spec) == {"Authorization": ("ORDERS_API_TOKEN",)}
    assert spec.as_tool()["function"]["name"] == "get_order_status"
    assert spec.path == path


def test_defaults_of_a_minimal_file(tmp_path: Path) -> None:
    path = write(tmp_path / "plan.yaml", {"name": "get_plan", "description": "The visitor's plan.",
                                          "request": {"url": "https://billing.example/me/plan"}})

    spec = parse_action(path)

    assert spec.request.method == "GET" and spec.request.timeout == 5.0 and spec.request.headers == {}
    assert spec.identity == "optional" and spec.side_effects is False
    assert spec.fields == () and spec.max_bytes == 4000 and spec.confirm is None
    assert spec.parameters == {"type": "object", "properties": {}, "additionalProperties": False}


def test_method_is_case_insensitive_and_confirm_is_kept(tmp_path: Path) -> None:
    action = with_request(method="post", url="https://api.acme.example/orders/{order_id}/cancel")
    action.update(side_effects=True, confirm="Cancel order {order_id}?")
    spec = parse_action(write(tmp_path / "cancel.yaml", action))

    assert spec.request.method == "POST"
    assert spec.side_effects is True
    assert spec.summary({"order_id": "A-1042"}) == "Cancel order A-1042?"


SCHEMA_OBJECT = {"type": "object", "properties": {"order_id": {"type": "object"}}, "required": ["order_id"]}

INVALID: list[tuple[str, dict[str, Any] | str, str]] = [
    ("not yaml", "name: [unclosed\n", "not valid YAML"),
    ("a list", "- name: x\n", "an action file is a mapping"),
    ("no name", order_action(name=None), "name: required"),
    ("name with spaces", order_action(name="get order"), "name: required: 1 to 64"),
    ("name too long", order_action(name="a" * 65), "name: required: 1 to 64"),
    ("reserved name", order_action(name="escalate_to_human"), "is the service's own tool"),
    ("no description", order_action(description=None), "description: required"),
    ("empty description", order_action(description="  "), "description: required"),
    ("parameters not a mapping", order_action(parameters=["order_id"]), "parameters: must be a JSON Schema"),
    ("parameters not an object", order_action(parameters={"type": "array"}), "must have 'type: object'"),
    ("parameters invalid schema", order_action(parameters={"type": "objekt"}), "parameters: not a valid JSON Schema"),
    ("parameters bad property name",
     order_action(parameters={"type": "object", "properties": {"order-id": {"type": "string"}}}),
     "parameters.properties.order-id: parameter names"),
    ("no request", order_action(request=None), "request: required"),
    ("method", with_request(method="FETCH"), "request.method: must be one of GET, POST, PUT, PATCH, DELETE"),
    ("no url", with_request(url=None), "request.url: required"),
    ("ftp url", with_request(url="ftp://files.acme.example/{order_id}"), "only http:// and https://"),
    ("file url", with_request(url="file:///etc/{order_id}"), "only http:// and https://"),
    ("placeholder host", with_request(url="https://{order_id}/orders"), "scheme and host are fixed text"),
    ("placeholder in host part", with_request(url="https://api.{order_id}.example/x"), "scheme and host are fixed"),
    ("placeholder port", with_request(url="https://api.acme.example:{order_id}/x"), "scheme and host are fixed"),
    ("credentials in url", with_request(url="https://me:pw@api.acme.example/orders/{order_id}"), "no user:password@"),
    ("fragment", with_request(url="https://api.acme.example/orders/{order_id}#top"), "no #fragment"),
    ("bad port", with_request(url="https://api.acme.example:http/orders/{order_id}"), "port is not a number"),
    ("undeclared placeholder", with_request(url="https://api.acme.example/orders/{order}"),
     "{order} is not a parameter declared"),
    ("optional placeholder", order_action(parameters={"type": "object",
                                                      "properties": {"order_id": {"type": "string"}}}),
     "{order_id} must be listed in parameters.required"),
    ("object placeholder", order_action(parameters=SCHEMA_OBJECT), "{order_id} must be a parameter of type string"),
    ("placeholder not a name", with_request(url="https://api.acme.example/orders/{order id}"), "not a parameter name"),
    ("headers not a mapping", with_request(headers=["Authorization: x"]), "request.headers: must be a mapping"),
    ("header value not text", with_header("X-Count", 5), "request.headers.X-Count: the value must be text"),
    ("header name invalid", with_header("Bad Header", "x"), "request.headers.Bad Header: not a valid header name"),
    ("forged user header", with_header("X-Supportbot-User", "admin"), "set by the service itself"),
    ("host header", with_header("host", "evil.example"), "set by the service itself"),
    ("header on two lines", with_header("X-A", "a\nX-Injected: 1"), "must be one line"),
    ("bad variable", with_header("Authorization", "Bearer ${1TOKEN}"), "is not an environment variable name"),
    ("timeout zero", with_request(timeout=0), "request.timeout: seconds, more than 0 and at most 30"),
    ("timeout too long", with_request(timeout=31), "request.timeout"),
    ("timeout text", with_request(timeout="5"), "request.timeout"),
    ("timeout bool", with_request(timeout=True), "request.timeout"),
    ("identity", order_action(identity="always"), "identity: must be one of none, optional, required"),
    ("side_effects text", order_action(side_effects="maybe"), "side_effects: must be true or false"),
    ("response not a mapping", order_action(response=["status"]), "response: must be a mapping"),
    ("fields not a list", order_action(response={"fields": "status"}), "response.fields: a list of field names"),
    ("empty field", order_action(response={"fields": ["status", ""]}), "response.fields"),
    ("field with empty part", order_action(response={"fields": ["shipping..carrier"]}), "response.fields"),
    ("max_bytes zero", order_action(response={"max_bytes": 0}), "response.max_bytes: a whole number from 1"),
    ("max_bytes too big", order_action(response={"max_bytes": 1_000_001}), "response.max_bytes"),
    ("unknown top key", order_action(descripton="typo"), "descripton: unknown key"),
    ("unknown request key", with_request(timout=5), "request.timout: unknown key"),
    ("unknown response key", order_action(response={"field": ["status"]}), "response.field: unknown key"),
    ("confirm unknown name", order_action(confirm="Cancel {order}?"), "confirm: {order} is not a parameter"),
    ("confirm broken", order_action(confirm="Cancel {order_id?"), "confirm: not a valid template"),
]


@pytest.mark.parametrize(("case", "content", "reason"), INVALID, ids=[case for case, _, _ in INVALID])
def test_invalid_file_is_refused_naming_file_and_field(tmp_path: Path, case: str, content: Any, reason: str) -> None:
    path = write(tmp_path / "action.yaml", content)

    with pytest.raises(ConfigError) as raised:
        parse_action(path)

    assert raised.value.path == str(path)
    assert reason in raised.value.reason, raised.value.reason


def test_errors_point_at_the_line_of_the_field(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("  timeout: 5", "  timout: 5")
    path = write(tmp_path / "get_order_status.yaml", text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "timout" in row)

    with pytest.raises(ConfigError) as raised:
        parse_action(path)

    assert raised.value.line == line
    assert str(raised.value).startswith(f"{path}:{line}: request.timout: unknown key")


@pytest.fixture
def actions_dir(tmp_path: Path) -> Path:
    root = tmp_path / "actions"
    write(root / "get_order_status.yaml", order_action())
    write(root / "get_plan.yml", order_action(name="get_plan", description="The plan.", parameters=None,
                                              request={"url": "https://billing.example/plan"}))
    shutil.copy(EXAMPLE, root / "get_order_status.yaml.example")  # examples are not loaded
    (root / "notes.txt").write_text("not an action")
    return root


def test_directory_loads_yaml_and_yml_files_as_tools(actions_dir: Path) -> None:
    actions = ActionFiles(actions_dir, interval=0).current()

    assert sorted(actions.by_name) == ["get_order_status", "get_plan"]
    assert actions.errors == ()
    assert sorted(tool["function"]["name"] for tool in actions.tools()) == ["get_order_status", "get_plan"]
    assert all(tool["type"] == "function" for tool in actions.tools())
    assert actions.get("get_plan") is actions.by_name["get_plan"]


def test_broken_edit_keeps_the_last_good_version_until_fixed(actions_dir: Path) -> None:
    files = ActionFiles(actions_dir, interval=0)
    path = actions_dir / "get_order_status.yaml"
    good = files.current().by_name["get_order_status"]

    write(path, with_request(url="ftp://api.acme.example/orders/{order_id}"))
    _touch(path, 10**9)
    broken = files.current()

    assert broken.by_name["get_order_status"] is good
    (error,) = broken.errors
    assert error.path == str(path) and "request.url" in error.reason

    write(path, order_action(description="Where the order is."))
    _touch(path, 2 * 10**9)
    fixed = files.current()

    assert fixed.errors == ()
    assert fixed.by_name["get_order_status"].description == "Where the order is."


def test_a_file_broken_from_the_start_is_left_out_and_reported(actions_dir: Path) -> None:
    write(actions_dir / "typo.yaml", order_action(name="typo", descripton="x"))

    actions = ActionFiles(actions_dir, interval=0).current()

    assert "typo" not in actions.by_name
    assert [error.path for error in actions.errors] == [str(actions_dir / "typo.yaml")]


def test_a_second_file_with_the_same_name_is_an_error_and_the_first_serves(actions_dir: Path) -> None:
    write(actions_dir / "z_copy.yaml", order_action(description="A copy."))

    actions = ActionFiles(actions_dir, interval=0).current()

    assert actions.by_name["get_order_status"].path == actions_dir / "get_order_status.yaml"
    (error,) = actions.errors
    assert error.path == str(actions_dir / "z_copy.yaml")
    assert "'get_order_status' is already the name of get_order_status.yaml" in error.reason


def test_removed_file_removes_the_action(actions_dir: Path) -> None:
    files = ActionFiles(actions_dir, interval=0)
    assert "get_plan" in files.current().by_name

    (actions_dir / "get_plan.yml").unlink()

    assert sorted(files.current().by_name) == ["get_order_status"]


def test_missing_directory_means_no_actions_and_no_error(tmp_path: Path) -> None:
    actions = ActionFiles(tmp_path / "nowhere", interval=0).current()

    assert actions.by_name == {} and actions.errors == () and actions.tools() == []


def test_unchanged_files_give_the_same_set(actions_dir: Path) -> None:
    files = ActionFiles(actions_dir, interval=0)

    assert files.current() is files.current()
