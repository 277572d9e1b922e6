"""deploy/kubernetes/: valid against the Kubernetes schemas, consistent with itself, and a layout the service loads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import ValidationError

from service.config import PROJECT_ROOT, Settings
from service.runtime import Runtime

from .conftest import make_settings

MANIFESTS = PROJECT_ROOT / "deploy" / "kubernetes"
# The newest Kubernetes whose schemas the validator ships (no network: they are inside the package).
KUBERNETES_VERSION = kubernetes_validate.utils.latest_version()
# Each shipped ConfigMap is the repository folder it was made from (scripts/kubernetes-configmaps.py).
CONFIGMAP_SOURCES = {"supportbot-prompt-support": PROJECT_ROOT / "prompts" / "support",
                     "supportbot-knowledge": PROJECT_ROOT / "knowledge",
                     "supportbot-knowledge-languages": PROJECT_ROOT / "knowledge" / "languages"}


def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, resource) for every resource in deploy/kubernetes/."""
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                yield path.name, document


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one resource of `kind` (and `name`)."""
    found = [d for _, d in documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = resource(kind)["spec"]["template"]["spec"]
    return spec


def server_container() -> dict[str, Any]:
    container: dict[str, Any] = pod_spec("Deployment")["containers"][0]
    return container


def test_every_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    kinds = []
    for name, document in documents():
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except ValidationError as error:
            pytest.fail(f"{name}: {document['kind']} {document['metadata'].get('name')}: {error.message} "
                        f"at {'.'.join(str(p) for p in error.path)}")
        kinds.append(document["kind"])

    assert {"Deployment", "Job", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap",
            "Secret"} <= set(kinds)


def test_the_validator_refuses_a_misspelt_field() -> None:
    deployment = resource("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}

    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_probes_use_readyz_and_healthz() -> None:
    container = server_container()

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {port["name"] for port in container["ports"]}
    assert {container["readinessProbe"]["httpGet"]["port"], container["livenessProbe"]["httpGet"]["port"]} <= ports


def test_termination_grace_covers_the_pre_stop_pause_and_the_graceful_shutdown() -> None:
    container = server_container()
    settings_map = resource("ConfigMap", "supportbot-settings")["data"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    shutdown_grace = int(settings_map["SUPPORTBOT_SHUTDOWN_GRACE_SECONDS"])

    assert pause > 0, "endpoints drop the pod before SIGTERM"
    assert pod_spec("Deployment")["terminationGracePeriodSeconds"] > pause + shutdown_grace


def test_the_pods_wait_for_the_migration_job_of_the_same_image() -> None:
    job = pod_spec("Job")["containers"][0]
    waiting = pod_spec("Deployment")["initContainers"][0]

    assert job["command"] == ["supportbot", "db", "upgrade"]
    assert "supportbot db current" in " ".join(waiting["command"])
    assert job["image"] == waiting["image"] == server_container()["image"]
    assert resource("Job")["spec"]["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}


def test_service_budget_and_autoscaler_point_at_the_deployment_pods() -> None:
    deployment = resource("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in selector.items())

    assert selects(resource("Service")["spec"]["selector"])
    assert selects(resource("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert resource("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert resource("HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2, "the budget leaves one serving"
    target = resource("Service")["spec"]["ports"][0]["targetPort"]
    assert target in {port["name"] for port in server_container()["ports"]}


def test_every_secret_and_config_map_the_pods_use_is_shipped() -> None:
    secret_keys = set(resource("Secret")["stringData"])
    maps = {d["metadata"]["name"] for _, d in documents() if d["kind"] == "ConfigMap"}
    containers = [*pod_spec("Deployment")["initContainers"], *pod_spec("Deployment")["containers"],
                  *pod_spec("Job")["containers"]]

    referenced = [variable["valueFrom"]["secretKeyRef"] for container in containers
                  for variable in container.get("env", []) if "secretKeyRef" in variable.get("valueFrom", {})]
    mounted = {volume["configMap"]["name"] for volume in pod_spec("Deployment")["volumes"] if "configMap" in volume}
    from_env = {source["configMapRef"]["name"] for source in server_container()["envFrom"]}

    assert {ref["key"] for ref in referenced} <= secret_keys
    assert {ref["name"] for ref in referenced} == {resource("Secret")["metadata"]["name"]}
    assert mounted | from_env <= maps


def test_every_setting_named_in_the_manifests_is_one_supportbot_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    settings_map: dict[str, str] = resource("ConfigMap", "supportbot-settings")["data"]
    names = set(settings_map) | {variable["name"] for variable in server_container()["env"]}
    fields = {f"SUPPORTBOT_{name.upper()}" for name in Settings.model_fields} | {"OPENAI_API_KEY"}

    assert names - fields == set(), "a misspelt name is ignored silently"
    for name, value in settings_map.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.rate_limit_storage.startswith("redis://") and settings.redis_url, "replicas share state"
    assert settings.trusted_proxies, "the ingress's forwarded headers are believed"


def test_config_maps_hold_the_repository_files() -> None:
    for name, folder in CONFIGMAP_SOURCES.items():
        shipped = resource("ConfigMap", name)["data"]
        files = {path.name: path.read_text(encoding="utf-8") for path in folder.iterdir() if path.is_file()}
        assert shipped == files, (f"{name} differs from {folder.relative_to(PROJECT_ROOT)}/: make it again with "
                                  "`python scripts/kubernetes-configmaps.py`")


def _mount(tmp_path: Path) -> Path:
    """The Deployment's volume mounts, laid out under `tmp_path` from the ConfigMaps' data."""
    volumes = {volume["name"]: volume for volume in pod_spec("Deployment")["volumes"]}
    for mount in server_container()["volumeMounts"]:
        target = tmp_path / mount["mountPath"].lstrip("/")
        volume = volumes[mount["name"]]
        if "configMap" not in volume:
            target.mkdir(parents=True, exist_ok=True)
            continue
        data: dict[str, str] = resource("ConfigMap", volume["configMap"]["name"])["data"]
        if "subPath" in mount:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[mount["subPath"]], encoding="utf-8")
            continue
        target.mkdir(parents=True, exist_ok=True)
        for key, text in data.items():
            (target / key).write_text(text, encoding="utf-8")
    return tmp_path


async def test_the_mounted_layout_serves_the_same_prompt_knowledge_and_rules(tmp_path: Path, sqlite_url: str) -> None:
    settings_map = resource("ConfigMap", "supportbot-settings")["data"]
    root = _mount(tmp_path / "pod")
    pod = Runtime.build(make_settings(tmp_path, sqlite_url,
                                      prompts_dir=root / settings_map["SUPPORTBOT_PROMPTS_DIR"].lstrip("/"),
                                      knowledge_dir=root / settings_map["SUPPORTBOT_KNOWLEDGE_DIR"].lstrip("/")))
    repo = Runtime.build(make_settings(tmp_path / "repo", sqlite_url))
    try:
        codes = repo.settings.languages
        assert pod.prompts.resolve(pod.settings.prompt).ref == repo.prompts.resolve(repo.settings.prompt).ref
        assert sorted(i.id for i in pod.knowledge.current().issues) == sorted(
            i.id for i in repo.knowledge.current().issues)
        assert len(pod.policies.rules()) == len(repo.policies.rules()) > 0
        assert [r.code for r in pod.languages.rules(codes)] == [r.code for r in repo.languages.rules(codes)] != []
    finally:
        await pod.aclose()
        await repo.aclose()
