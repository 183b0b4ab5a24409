"""deploy/kubernetes renders to objects a Kubernetes 1.30 API server and the operators' CRDs accept.

No cluster and no kustomize binary are needed: :func:`render` applies the subset of Kustomize the kit
uses (resources, namespace, images, JSON 6902 patches) and refuses any other field, so a kustomization
that uses more fails here instead of rendering wrongly.  Core objects are validated by
kubernetes-validate in strict mode (an unknown field fails); the ServiceMonitor, ScaledObject and
TriggerAuthentication against the CRD schemas vendored in deploy/kubernetes/crds/, closed the same way.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import click
import jsonschema  # type: ignore[import-untyped]  # no stubs among the dev dependencies
import kubernetes_validate  # type: ignore[import-untyped]  # no stubs
import pytest
import yaml

from recalls.cli.main import cli
from recalls.shared.contracts import VERBS
from recalls.shared.settings import Settings
from recalls.shared.topology import DEFAULT_PREFIX, Topology

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = {"base": KIT / "base", "production": KIT / "overlays" / "production"}
KUBERNETES_VERSION = "1.30.0"  # the oldest release still supported upstream when the kit was written
CUSTOM = {"monitoring.coreos.com/v1", "keda.sh/v1alpha1"}
Object = dict[str, Any]


# --- The renderer: the subset of Kustomize the kit uses ------------------------------------------------


def render(folder: Path) -> list[Object]:
    """The objects ``kubectl kustomize folder`` prints, for the fields :data:`KNOWN_FIELDS` allows."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_FIELDS
    assert not unknown, f"{folder}: the test's renderer does not apply {sorted(unknown)}"
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(document for document in yaml.safe_load_all(path.read_text()) if document)
    for image in kustomization.get("images", []):
        for obj in objects:
            set_image(obj, image)
    for patch in kustomization.get("patches", []):
        targets = [obj for obj in objects if matches(obj, patch["target"])]
        assert len(targets) == 1, f"{folder}: patch {patch['path']} matches {len(targets)} objects"
        json_patch(targets[0], yaml.safe_load((folder / patch["path"]).read_text()))
    if "namespace" in kustomization:
        for obj in objects:
            obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


KNOWN_FIELDS = {"apiVersion", "kind", "resources", "images", "patches", "namespace"}


def pod_spec(obj: Object) -> Object | None:
    if obj["kind"] in {"Deployment", "Job"}:
        spec = obj["spec"]["template"]["spec"]
        assert isinstance(spec, dict)
        return spec
    return None


def containers(obj: Object) -> list[Object]:
    spec = pod_spec(obj) or {}
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def set_image(obj: Object, image: dict[str, str]) -> None:
    for container in containers(obj):
        name = container["image"].split("@")[0]
        if ":" in name.rsplit("/", 1)[-1]:  # a tag, not a registry's port
            name = name.rsplit(":", 1)[0]
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image['newTag']}"


def matches(obj: Object, target: dict[str, str]) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    wanted = {"group": group, "version": version, "kind": obj["kind"], "name": obj["metadata"]["name"]}
    return all(wanted[key] == value for key, value in target.items())


def json_patch(document: Object, operations: list[Object]) -> None:
    """RFC 6902's add, replace and remove (what the kit's patches use), failing on a missing path."""
    for operation in operations:
        *parents, last = [
            part.replace("~1", "/").replace("~0", "~") for part in operation["path"][1:].split("/")
        ]
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if operation["op"] == "add":
                node.insert(index, operation["value"])
            elif operation["op"] == "replace":
                node[index] = operation["value"]
            else:
                del node[index]
            continue
        assert operation["op"] == "add" or last in node, f"{operation['path']}: nothing to {operation['op']}"
        if operation["op"] == "remove":
            del node[last]
        else:
            node[last] = operation["value"]


def rendered(name: str) -> list[Object]:
    return render(KUSTOMIZATIONS[name])


def one(objects: list[Object], kind: str, name: str) -> Object:
    [found] = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return found


# --- Validation ----------------------------------------------------------------------------------------


def core_errors(obj: Object) -> list[str]:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{obj['kind']}/{obj['metadata']['name']}: {error.message}"]
    return []


def closed(schema: Any) -> Any:
    """``schema`` with every object that lists its properties closed to others, as strict validation is."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    open_ = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and not open_:
        result["additionalProperties"] = False
    return result


def crd_schemas() -> dict[tuple[str, str], Object]:
    schemas = {}
    for path in (KIT / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        schemas[(f"{crd['group']}/{crd['version']}", crd["kind"])] = closed(crd["openAPIV3Schema"])
    return schemas


def custom_errors(obj: Object) -> list[str]:
    schema = crd_schemas()[(obj["apiVersion"], obj["kind"])]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{obj['kind']}/{obj['metadata']['name']} {list(error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


def errors(obj: Object) -> list[str]:
    return custom_errors(obj) if obj["apiVersion"] in CUSTOM else core_errors(obj)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_rendered_object_is_valid(name: str) -> None:
    objects = rendered(name)
    kinds = {obj["kind"] for obj in objects}
    assert kinds == {
        "ConfigMap", "Secret", "Job", "Deployment", "PodDisruptionBudget", "Service", "NetworkPolicy",
        "ServiceMonitor", "ScaledObject", "TriggerAuthentication",
    }  # fmt: skip
    assert [problem for obj in objects for problem in errors(obj)] == []


def test_the_renderer_agrees_with_kustomize_on_what_the_overlay_changes() -> None:
    base, production = rendered("base"), rendered("production")
    assert {obj["metadata"].get("namespace") for obj in production} == {"recalls"}
    worker = one(production, "Deployment", "recalls-worker")
    assert worker["spec"]["replicas"] == 3
    assert worker["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert one(production, "ScaledObject", "recalls-worker")["spec"]["maxReplicaCount"] == 10
    assert "minAvailable" not in one(production, "PodDisruptionBudget", "recalls-worker")["spec"]
    # The base is left as it was: the overlay's patches work on its own copy.
    assert one(base, "Deployment", "recalls-worker")["spec"]["replicas"] == 2


@pytest.mark.parametrize(
    ("kind", "name", "path", "field"),
    [
        ("Deployment", "recalls-worker", ["spec", "template", "spec", "containers", 0], "livenesProbe"),
        ("Job", "recalls-setup", ["spec", "template", "spec"], "restartPolicyy"),
        ("ServiceMonitor", "recalls-worker", ["spec", "endpoints", 0], "intervall"),
        ("ScaledObject", "recalls-worker", ["spec"], "maxReplicas"),
        ("ScaledObject", "recalls-worker", ["spec", "triggers", 0, "authenticationRef"], "secret"),
        ("TriggerAuthentication", "recalls-rabbitmq", ["spec", "secretTargetRef", 0], "parameters"),
    ],
)
def test_a_misspelt_field_fails_validation(kind: str, name: str, path: list[str | int], field: str) -> None:
    broken = copy.deepcopy(one(rendered("production"), kind, name))
    node: Any = broken
    for part in path:
        node = node[part]
    node[field] = "x"
    assert errors(broken) != []


def test_a_value_of_the_wrong_type_fails_validation() -> None:
    scaled = copy.deepcopy(one(rendered("base"), "ScaledObject", "recalls-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["value"] = 32  # KEDA's metadata takes strings only
    assert custom_errors(scaled) != []


def test_a_patch_to_a_missing_path_is_refused() -> None:
    with pytest.raises(AssertionError, match="nothing to replace"):
        json_patch({"spec": {}}, [{"op": "replace", "path": "/spec/replicas", "value": 3}])


# --- What the manifests promise ------------------------------------------------------------------------


def env_of(objects: list[Object], container: Object) -> dict[str, str]:
    """The container's environment: its envFrom ConfigMaps and Secrets, then its env."""
    found: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            found |= one(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            found |= one(objects, "Secret", source["secretRef"]["name"])["stringData"]
    found |= {item["name"]: item["value"] for item in container.get("env", [])}
    return found


def default(setting: str) -> Any:
    return Settings.model_fields[setting].default


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_workers_run_in_fleet_mode_with_probes_on_their_metrics_port(name: str) -> None:
    objects = rendered(name)
    worker = one(objects, "Deployment", "recalls-worker")
    [container] = containers(worker)
    assert container["args"] == ["worker"]
    env = env_of(objects, container)
    assert env["RECALLS_REDIS_URL"].startswith("redis")  # several replicas must share one budget
    assert env["RECALLS_METRICS_HOST"] == "0.0.0.0"  # noqa: S104  (the kubelet and Prometheus are outside)
    port = int(env["RECALLS_METRICS_PORT"])
    ports = {item["name"]: item["containerPort"] for item in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == port
    monitor = one(objects, "ServiceMonitor", "recalls-worker")
    service = one(objects, "Service", "recalls-worker-metrics")
    [endpoint] = monitor["spec"]["endpoints"]
    [service_port] = [item for item in service["spec"]["ports"] if item["name"] == endpoint["port"]]
    assert ports[service_port["targetPort"]] == port
    assert service["spec"]["selector"] == monitor["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_a_stopping_worker_has_time_to_finish_its_commands(name: str) -> None:
    spec = pod_spec(one(rendered(name), "Deployment", "recalls-worker"))
    assert spec is not None
    # In-flight commands get RECALLS_SHUTDOWN_GRACE, then the event recorder as long again.
    assert spec["terminationGracePeriodSeconds"] > 2 * default("shutdown_grace")


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_is_locked_down_and_sized(name: str) -> None:
    for obj in rendered(name):
        spec = pod_spec(obj)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["automountServiceAccountToken"] is False
        for container in containers(obj):
            where = f"{obj['metadata']['name']}/{container['name']}"
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            assert container["image"] == f"ghcr.io/example/recalls-fleet:{project_version()}", where


def project_version() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert isinstance(version, str)
    return version


def test_the_setup_job_migrates_the_store_before_it_declares_the_topology() -> None:
    job = one(rendered("base"), "Job", "recalls-setup")
    spec = pod_spec(job)
    assert spec is not None
    assert [c["args"] for c in spec["initContainers"]] == [["migrate"]]
    assert [c["args"] for c in spec["containers"]] == [["topology"]]


def test_every_container_runs_a_real_cli_command() -> None:
    known = set(cli.list_commands(click.Context(cli)))
    for obj in rendered("production"):
        for container in containers(obj):
            command = container["args"][0]
            assert command in known, (obj["metadata"]["name"], command)


def test_each_role_gets_only_its_own_broker_user() -> None:
    objects = rendered("base")
    users: dict[str, str] = {}
    for kind, name in [
        ("Deployment", "recalls-worker"),
        ("Deployment", "recalls-api"),
        ("Job", "recalls-setup"),
    ]:
        for container in containers(one(objects, kind, name)):
            users[container["name"]] = (
                env_of(objects, container)["RECALLS_AMQP_URL"].split("//")[1].split(":")[0]
            )
    admin = "recalls-admin"
    assert users == {"worker": "recalls-worker", "api": "recalls-api", "migrate": admin, "topology": admin}
    # DVSA's credentials reach the workers only.
    api = containers(one(objects, "Deployment", "recalls-api"))[0]
    assert not any(key.startswith("RECALLS_DVSA_") for key in env_of(objects, api))


def test_the_example_secrets_hold_nothing_real() -> None:
    for obj in rendered("base"):
        if obj["kind"] == "Secret":
            for key, value in obj["stringData"].items():
                assert "change-me" in value, (obj["metadata"]["name"], key)


def test_keda_scales_the_workers_on_the_live_command_queues() -> None:
    objects = rendered("production")
    scaled = one(objects, "ScaledObject", "recalls-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "recalls-worker"
    assert env_of(objects, containers(one(objects, "Deployment", "recalls-worker"))[0])["RECALLS_PREFIX"] == (
        DEFAULT_PREFIX
    )
    live = {Topology(DEFAULT_PREFIX).command_queue(verb) for verb in VERBS}
    triggers = scaled["spec"]["triggers"]
    assert {trigger["metadata"]["queueName"] for trigger in triggers} == live
    assert scaled["spec"]["minReplicaCount"] >= 1
    for trigger in triggers:
        assert trigger["type"] == "rabbitmq"
        auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in one(objects, "Secret", ref["name"])["stringData"]


def ports_of(rules: list[Object]) -> set[int]:
    return {port["port"] for rule in rules for port in rule.get("ports", [])}


def test_network_policies_let_each_role_reach_only_what_it_talks_to() -> None:
    objects = rendered("production")
    worker = one(objects, "NetworkPolicy", "recalls-worker")["spec"]
    # DNS, RabbitMQ (and over TLS), Redis, PostgreSQL, DVSA over https.
    assert ports_of(worker["egress"]) == {53, 5672, 5671, 6379, 5432, 443}
    assert ports_of(worker["ingress"]) == {9464}
    api = one(objects, "NetworkPolicy", "recalls-api")["spec"]
    assert ports_of(api["ingress"]) == {8080}
    assert 6379 not in ports_of(api["egress"])  # the API never talks to Redis
    setup = one(objects, "NetworkPolicy", "recalls-setup")["spec"]
    assert setup["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in setup
    for policy in (worker, api, setup):
        labels = policy["podSelector"]["matchLabels"]
        assert any(pod_labels(obj) == labels for obj in objects if pod_spec(obj) is not None)


def pod_labels(obj: Object) -> dict[str, str]:
    labels = obj["spec"]["template"]["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels
