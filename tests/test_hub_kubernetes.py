"""Zero to JupyterHub cannot run here: what can be checked of classroom/kubernetes/ is. The
chart's version is pinned and its hub runs the JupyterHub series and the authenticator that
pyproject.toml pins; the hub image and the students' image are built from this repository;
the per-student exchange mounts what it should (its hook is run on stand-in spawners); and
the collect it relies on files a submission only under the folder it was found in (a real
``nbgrader collect``)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
KUBE = REPO / "classroom" / "kubernetes"
CHART = "4.4.0"
# What the chart's hub image holds (zero-to-jupyterhub-k8s, images/hub/requirements.txt at
# tag 4.4.0). A new chart version: read its requirements.txt and change both.
CHART_HUB = {"4.4.0": {"jupyterhub": "5.5.0", "jupyterhub-nativeauthenticator": "1.3.0"}}


def _pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["classroom"]
    return dict(r.split("==") for r in reqs)


def _values() -> dict[str, Any]:
    return yaml.safe_load((KUBE / "values.yaml").read_text())


def test_chart_and_hub_versions_agree_with_pyproject() -> None:
    steps = (KUBE / "README.md").read_text()
    installs = re.findall(r"helm upgrade --install .*?(?=\n\s*\n|```)", steps, re.S)
    assert installs and all(f"--version {CHART}" in i for i in installs), installs
    assert f"version {CHART}" in (KUBE / "values.yaml").read_text()
    dockerfile = (KUBE / "hub.Dockerfile").read_text()
    assert re.search(rf"^FROM quay\.io/jupyterhub/k8s-hub:{re.escape(CHART)}$", dockerfile,
                     re.M)
    hub = CHART_HUB[CHART]
    pins = _pins()
    assert pins["jupyterhub-nativeauthenticator"] == hub["jupyterhub-nativeauthenticator"]
    # The students' servers (pyproject's jupyterhub) and the chart's hub: one 5.x series.
    assert pins["jupyterhub"].split(".")[:2] == hub["jupyterhub"].split(".")[:2]


def test_images_are_built_from_this_repository() -> None:
    from scripts.check_env_agree import check

    values = _values()
    steps = (KUBE / "README.md").read_text()
    single = values["singleuser"]
    build = re.search(r"jupyter-repo2docker --no-run --target-repo-dir (\S+) \\\n\s+"
                      r"--image-name (\S+):(\S+) \.", steps)
    assert build is not None
    target, name, tag = build.groups()
    assert (single["image"]["name"], single["image"]["tag"]) == (name, tag)
    env = single["extraEnv"]
    assert env["KSMBOOK_BOOK"] == f"{target}/notebooks" and (REPO / "notebooks").is_dir()
    assert env["JUPYTER_CONFIG_PATH"] == f"{target}/classroom/student"
    assert single["cmd"][:2] == ["python", "-m"]
    assert importlib.util.find_spec(single["cmd"][2]) is not None
    # repo2docker uses environment.yml only when nothing else takes precedence over it.
    for other in ("binder", ".binder", "Dockerfile", "requirements.txt", "Pipfile",
                  "Project.toml", "setup.py", "postBuild", "start"):
        assert not (REPO / other).exists(), f"{other} would change what repo2docker builds"
    env_yml = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env_yml["dependencies"] if isinstance(d, dict))
    pinned = {re.split(r"==", p)[0].lower() for p in pip if "==" in p}
    assert {"jupyterhub", "jupyterlab", "nbgrader"} <= pinned
    assert any(p.strip() in ("-e .", ".") for p in pip)
    assert check(REPO) == []  # the same pins as pyproject.toml

    # The hub: the chart's image plus ksmbook, used by the hub and its init container.
    hub = values["hub"]
    built = re.search(r"docker build -f classroom/kubernetes/hub.Dockerfile \\\n\s+"
                      r"-t (\S+):(\S+) \.", steps)
    assert built is not None
    assert (hub["image"]["name"], hub["image"]["tag"]) == built.groups()
    init = hub["initContainers"][0]
    assert init["image"] == ":".join(built.groups())
    assert init["command"][:5] == ["python", "-m", "ksmbook", "classroom", "hub-admin"]


def test_hub_config_is_the_class_hubs() -> None:
    from ksmbook.classroom import hub as rules

    config = _values()["hub"]["config"]
    module, _, cls = config["JupyterHub"]["authenticator_class"].rpartition(".")
    assert cls == "ClassAuthenticator" and importlib.util.find_spec(module) is not None
    auth = config["ClassAuthenticator"]
    assert auth["open_signup"] is False
    assert auth["minimum_password_length"] == rules.MIN_PASSWORD
    assert auth["allowed_failed_logins"] == rules.FAILED_LOGINS
    assert auth["seconds_before_next_try"] == rules.LOCKOUT_SECONDS
    assert config["Authenticator"]["username_pattern"] == f"^{rules.NAME_PATTERN}$"
    assert _values()["cull"]["enabled"] is True


def _spawn(name: str) -> SimpleNamespace:
    """Run the values' exchange hook on a stand-in KubeSpawner for `name`."""
    config = SimpleNamespace(KubeSpawner=SimpleNamespace())
    namespace: dict[str, Any] = {"c": config}
    exec(_values()["hub"]["extraConfig"]["ksmbook-exchange"], namespace)
    spawner = SimpleNamespace(user=SimpleNamespace(name=name), uid=1000, environment={},
                              volume_mounts=[{"name": "home", "mountPath": "/home/jovyan"}],
                              init_containers=[], image="registry.example.org/ksmbook:0.1.0")
    config.KubeSpawner.pre_spawn_hook(spawner)
    return spawner


def test_each_student_pod_mounts_only_its_own_inbound() -> None:
    values = _values()
    claim = yaml.safe_load((KUBE / "exchange-pvc.yaml").read_text())["metadata"]["name"]
    volumes = {v["name"]: v for v in values["singleuser"]["storage"]["extraVolumes"]}
    assert volumes["nbgrader-exchange"]["persistentVolumeClaim"]["claimName"] == claim
    exchange = values["singleuser"]["extraEnv"]["KSMBOOK_EXCHANGE"]
    course = values["singleuser"]["extraEnv"]["KSMBOOK_COURSE"]

    ada = _spawn("ada")
    mounts = {m["mountPath"]: m for m in ada.volume_mounts}
    assert mounts[exchange]["name"] == "exchange-root"  # not the exchange volume itself
    shared = [m for m in ada.volume_mounts if m["name"] == "nbgrader-exchange"]
    assert {m["subPath"]: m.get("readOnly", False) for m in shared} == {
        f"{course}/outbound": True, f"{course}/feedback": True,
        f"{course}/inbound/ada": False}
    assert mounts[f"{exchange}/{course}/inbound"]["subPath"] == f"{course}/inbound/ada"
    assert "/home/jovyan" in mounts and ada.uid == 1000
    assert "inbound/ada" in ada.init_containers[0]["command"][-1]

    teacher = _spawn("teacher")
    assert [m for m in teacher.volume_mounts if m["name"] == "nbgrader-exchange"] == [
        {"name": "nbgrader-exchange", "mountPath": exchange}]
    assert teacher.uid != 1000  # students cannot list feedback/ (0711, the teacher's)
    assert teacher.environment["JUPYTER_CONFIG_PATH"].endswith("/classroom/teacher")
    with pytest.raises(ValueError):
        _spawn("../grace")


@pytest.mark.skipif(importlib.util.find_spec("nbgrader") is None,
                    reason="the classroom extra is not installed")
def test_collect_files_each_submission_under_its_folder(tmp_path: Path) -> None:
    """The teacher's view of the per-student exchange; a real `nbgrader collect`."""
    course, exchange = tmp_path / "course", tmp_path / "exchange"
    inbound = exchange / "ksmbook-course" / "inbound"

    def submission(folder: str, claimed: str, when: str, text: str) -> None:
        d = inbound / folder / f"{claimed}+ps1+2026-12-0{when} 10:00:00.000000 UTC+r{when}"
        d.mkdir(parents=True)
        (d / "ps1.ipynb").write_text(text)
        (d / "timestamp.txt").write_text(f"2026-12-0{when} 10:00:00.000000 UTC")

    submission("ada", "ada", "1", "ada's own")
    submission("grace", "grace", "1", "grace's own")
    submission("ada", "grace", "2", "ada, as grace")  # newer: nbgrader's collect takes it
    (inbound / "ada" / "ada+ps1+2026-12-03 10:00:00.000000 UTC+link").symlink_to(course)
    course.mkdir()
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'ksmbook-course'\n"
        f"c.Exchange.root = {str(exchange)!r}\n"
        "c.ExchangeFactory.collect = 'ksmbook.classroom.exchange.ExchangeCollect'\n"
        "c.ExchangeCollect.per_student_inbound = True\n")
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [str(bin_dir / "nbgrader"), "collect", "ps1"], cwd=course, capture_output=True,
        text=True, timeout=120,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
             "JUPYTER_CONFIG_PATH": ""})
    assert done.returncode == 0, done.stderr
    assert "claims to be submitted by grace but is in ada's folder" in done.stderr
    assert "not a folder" in done.stderr
    submitted = course / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == ["ada", "grace"]
    assert (submitted / "ada" / "ps1" / "ps1.ipynb").read_text() == "ada's own"
    assert (submitted / "grace" / "ps1" / "ps1.ipynb").read_text() == "grace's own"
