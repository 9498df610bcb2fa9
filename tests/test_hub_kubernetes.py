"""Zero to JupyterHub cannot run here: what can be checked of classroom/kubernetes/ is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent


def test_kubernetes_values_match_the_image_built_from_environment_yml() -> None:
    """Zero to JupyterHub cannot run here: check what can be checked. The files are valid
    YAML; the values start what the repo2docker image of this repository holds; and
    repo2docker builds that image from environment.yml alone."""
    import importlib.util

    from scripts.check_env_agree import check

    kube = REPO / "classroom" / "kubernetes"
    values = yaml.safe_load((kube / "values.yaml").read_text())
    pvc = yaml.safe_load((kube / "exchange-pvc.yaml").read_text())
    steps = (kube / "README.md").read_text()
    single = values["singleuser"]

    # The image the values use is the one the README builds, with the repository where the
    # values look for it.
    build = re.search(r"jupyter-repo2docker --no-run --target-repo-dir (\S+) \\\n\s+"
                      r"--image-name (\S+):(\S+) \.", steps)
    assert build is not None
    target, name, tag = build.groups()
    assert (single["image"]["name"], single["image"]["tag"]) == (name, tag)
    env = single["extraEnv"]
    assert env["KSMBOOK_BOOK"] == f"{target}/notebooks" and (REPO / "notebooks").is_dir()
    assert env["JUPYTER_CONFIG_PATH"] == f"{target}/classroom/student"
    assert (REPO / "classroom" / "student" / "nbgrader_config.py").is_file()
    assert single["cmd"][:2] == ["python", "-m"]
    assert importlib.util.find_spec(single["cmd"][2]) is not None

    # repo2docker uses environment.yml only when nothing else takes precedence over it.
    for other in ("binder", ".binder", "Dockerfile", "requirements.txt", "Pipfile",
                  "Project.toml", "setup.py", "postBuild", "start"):
        assert not (REPO / other).exists(), f"{other} would change what repo2docker builds"
    env_yml = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env_yml["dependencies"] if isinstance(d, dict))
    pinned = {re.split(r"==", p)[0].lower() for p in pip if "==" in p}
    # The servers the values start need the hub's single-user server, JupyterLab and nbgrader.
    assert {"jupyterhub", "jupyterlab", "nbgrader"} <= pinned
    assert any(p.strip() in ("-e .", ".") for p in pip)
    assert check(REPO) == []  # the same pins as pyproject.toml

    # The exchange is one volume that every student's pod mounts, where nbgrader looks.
    mount = single["storage"]["extraVolumeMounts"][0]
    volume = single["storage"]["extraVolumes"][0]
    assert mount["mountPath"] == env["KSMBOOK_EXCHANGE"]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert single["memory"]["limit"] and single["cpu"]["limit"]
    assert values["cull"]["enabled"] is True
