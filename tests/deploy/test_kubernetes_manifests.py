"""The Kubernetes manifests of deploy/kubernetes hold together.

What an operator gets from ``kubectl apply -k deploy/kubernetes/base`` (or
``.../gpu``): documents that the Kubernetes API accepts, probes on paths
deepaas-run serves, a grace period that outlasts deepaas-run's own
shutdown, the state volume where ``--state-dir`` points, and container
arguments that a real deepaas-run accepts and serves with.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deepaas.cmd.run import SHUTDOWN_MARGIN
from tests.conftest import ROOT
from tests.processes import wait_for
from tests.servers import RunningServer

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("base", "gpu")
#: The oldest Kubernetes still commonly run, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30", "1.37")
VENV_BIN = ROOT / ".venv" / "bin"


def _merge(base: Any, patch: Any) -> Any:
    """A strategic merge patch as kustomize applies it, for what our patches use.

    Mappings merge key by key; lists of mappings with a ``name`` (containers,
    volumes, env) merge item by item on it; any other value replaces.
    """
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if _named_list(base) and _named_list(patch):
        merged_list = copy.deepcopy(base)
        names = [item["name"] for item in merged_list]
        for item in patch:
            if item["name"] in names:
                at = names.index(item["name"])
                merged_list[at] = _merge(merged_list[at], item)
            else:
                merged_list.append(item)
        return merged_list
    return copy.deepcopy(patch)


def _named_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and "name" in item for item in value)
    )


def render(overlay: str) -> list[dict[str, Any]]:
    """The documents of a kustomization: its resources, its patches applied."""
    folder = KUBERNETES / overlay
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    documents: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        if path.is_dir():
            documents.extend(render(str(path.relative_to(KUBERNETES))))
        else:
            documents.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for entry in kustomization.get("patches", []):
        patch = yaml.safe_load((folder / entry["path"]).read_text())
        targets = [
            i
            for i, d in enumerate(documents)
            if (d["kind"], d["metadata"]["name"])
            == (patch["kind"], patch["metadata"]["name"])
        ]
        assert len(targets) == 1, f"{entry['path']} patches no single document"
        documents[targets[0]] = _merge(documents[targets[0]], patch)
    return documents


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def option(args: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``args``."""
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_document_validates_against_the_kubernetes_schemas(
    overlay: str, version: str
) -> None:
    documents = render(overlay)
    assert {d["kind"] for d in documents} == {
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
    }
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validation_catches_a_mistake() -> None:
    deployment = copy.deepcopy(one(render("base"), "Deployment"))
    probe = container([deployment])["readinessProbe"]
    probe["httpGet"]["port"] = [5000]  # a list where a port belongs
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    container([deployment])["readinessProbes"] = container([deployment]).pop(
        "readinessProbe"
    )  # a misspelt field, which only strict validation sees
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubectl_renders_what_the_tests_check(overlay: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    by_kind = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert by_kind == {d["kind"]: d for d in render(overlay)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_outlasts_the_shutdown(overlay: str) -> None:
    documents = render(overlay)
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    model = container(documents)
    timeout = float(option(model["args"], "--shutdown-timeout") or 30)
    pre_stop = model["lifecycle"]["preStop"]
    sleep = float(
        pre_stop["sleep"]["seconds"]
        if "sleep" in pre_stop
        else pre_stop["exec"]["command"][-1]
    )
    assert pre_stop.get("exec", {}).get("command", ["sleep"])[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= sleep + timeout + SHUTDOWN_MARGIN


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_deepaas_paths_on_its_port(overlay: str) -> None:
    documents = render(overlay)
    model = container(documents)
    port = option(model["args"], "--listen-port")
    (declared,) = model["ports"]
    assert str(declared["containerPort"]) == port
    assert option(model["args"], "--listen-ip") == "0.0.0.0"
    probes = {
        k: model[k]["httpGet"]
        for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    # Liveness must not fail while a worker restarts or a model is busy:
    # that is what /ready reports, and a restart would kill local trainings.
    assert probes["livenessProbe"]["path"] == "/health"
    assert probes["startupProbe"]["path"] == "/health"
    assert probes["readinessProbe"]["path"] == "/ready"
    for probe in probes.values():
        assert probe["port"] in (declared["name"], declared["containerPort"])
    service = one(documents, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == declared["name"]
    labels = one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    selector = one(documents, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_state_volume_is_where_the_state_dir_is(overlay: str) -> None:
    documents = render(overlay)
    model = container(documents)
    state_dir = option(model["args"], "--state-dir")
    assert state_dir == "/var/lib/deepaas"  # the image's VOLUME
    (mount,) = [m for m in model["volumeMounts"] if m["mountPath"] == state_dir]
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = one(documents, "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # A second pod on the same volume would start before the first let go.
    assert one(documents, "Deployment")["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_runs_as_the_images_user(overlay: str) -> None:
    documents = render(overlay)
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 1000 and pod["fsGroup"] == 1000
    own = container(documents)["securityContext"]
    assert own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]


def test_only_the_gpu_variant_asks_for_a_gpu() -> None:
    base = container(render("base"))["resources"]
    gpu = container(render("gpu"))["resources"]
    assert "nvidia.com/gpu" not in base.get("limits", {})
    assert gpu["limits"]["nvidia.com/gpu"] == 1
    assert container(render("gpu"))["args"] == container(render("base"))["args"]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_a_real_deepaas_run_serves_with_the_container_args(tmp_path: Path) -> None:
    model = container(render("base"))
    args = list(model["args"])
    assert args[0] == "deepaas-run"
    # Loopback and any free port here; every other option as in the manifest.
    args[args.index("--listen-ip") + 1] = "127.0.0.1"
    args[args.index("--listen-port") + 1] = "0"
    args[args.index("--state-dir") + 1] = str(tmp_path / "state")
    env = dict(
        os.environ,
        DEEPAAS_V2_MODEL="deepaas-demo",
        XDG_STATE_HOME=str(tmp_path / "xdg"),
        DEEPAAS_DEMO_DIR=str(tmp_path / "demo"),
    )
    with RunningServer(
        *args[1:], command=[str(VENV_BIN / "deepaas-run")], port=None, env=env,
        log=tmp_path / "server.log",
    ) as server:  # fmt: skip
        base = server.wait_serving()
        paths = {
            model[k]["httpGet"]["path"]
            for k in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        for path in sorted(paths):
            wait_for(lambda p=path: _get(base + p) == 200, f"{path} to answer 200")
        assert (tmp_path / "state" / "trainings.sqlite").exists()

        started = time.monotonic()
        assert server.terminate(timeout=60) == 0
        took = time.monotonic() - started
    pod = one(render("base"), "Deployment")["spec"]["template"]["spec"]
    assert took < pod["terminationGracePeriodSeconds"]
    assert "unknown" not in (server.stderr() + server.stdout()).lower()


DOCKERFILE = ROOT / "deploy" / "container" / "Dockerfile"


@pytest.mark.skipif(not DOCKERFILE.exists(), reason="no deploy/container/Dockerfile")
def test_the_manifests_fit_the_container_image() -> None:
    text = DOCKERFILE.read_text()
    instructions = dict(
        re.findall(r"^(USER|VOLUME|EXPOSE|ENTRYPOINT)\s+(.+)$", text, re.MULTILINE)
    )
    documents = render("base")
    model = container(documents)
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    assert instructions["USER"].split(":")[0] == str(
        pod["securityContext"]["runAsUser"]
    )
    assert option(model["args"], "--state-dir") in instructions["VOLUME"]
    assert instructions["EXPOSE"].strip() == str(model["ports"][0]["containerPort"])
    # The manifest's args replace the image's CMD and run under its ENTRYPOINT.
    assert "deepaas-run" not in instructions["ENTRYPOINT"]
    assert model["args"][0] == "deepaas-run"
