#!/usr/bin/env python3
"""Check that environment.yml (conda/Binder) agrees with pyproject.toml.

Agreement means:
- every runtime dependency of pyproject.toml is pinned exactly (``==``);
- environment.yml's pip section pins each of them to the same version, and pins nothing
  that pyproject.toml does not know (a test-extra package may appear, at the same pin);
- environment.yml asks for a Python that pyproject.toml's ``requires-python`` admits;
- environment.yml installs the project itself (``-e .`` or ``.``).

Use as a function, ``check()`` returns the list of mismatches (empty when they agree), or as
a script: ``python scripts/check_env_agree.py`` prints them and exits 1 if there are any.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["check", "main"]

ROOT = Path(__file__).resolve().parent.parent

_REQ = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<op>[=<>!~]=?=?)?\s*"
    r"(?P<version>[^\s;,]*)"
)


def _norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse_req(text: str) -> tuple[str, str | None, str | None]:
    """(normalised name, operator, version) of a requirement string like ``numpy==2.4.6``."""
    m = _REQ.match(text)
    if not m:
        raise ValueError(f"cannot parse requirement {text!r}")
    return _norm(m["name"]), m["op"], (m["version"] or None)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml  # type: ignore[import-untyped]  # PyYAML: jupyter_events needs it
    except ImportError:  # pragma: no cover - fallback for a bare interpreter
        return _load_env_yaml_minimal(path.read_text())
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return data


def _load_env_yaml_minimal(text: str) -> dict[str, Any]:
    """Read the block-style subset of YAML that environment.yml uses (no PyYAML needed)."""
    deps: list[Any] = []
    pip: list[str] | None = None
    in_deps = False
    deps_indent = -1
    pip_indent = -1
    data: dict[str, Any] = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        if indent == 0:
            in_deps = body == "dependencies:"
            pip = None
            if ":" in body and not in_deps:
                key, _, value = body.partition(":")
                data[key.strip()] = value.strip()
            continue
        if not in_deps or not body.startswith("- "):
            continue
        item = body[2:].strip()
        if deps_indent < 0:
            deps_indent = indent
        if pip is not None and indent > pip_indent:
            pip.append(item.strip("'\""))
        elif indent == deps_indent:
            if item.rstrip(":").strip() == "pip" and item.endswith(":"):
                pip = []
                pip_indent = indent
                deps.append({"pip": pip})
            else:
                pip = None
                deps.append(item.strip("'\""))
    data["dependencies"] = deps
    return data


def _python_ok(requires_python: str, conda_spec: str) -> bool:
    """Whether conda's ``python=X.Y`` (or ``python==X.Y.Z``, ``python>=X.Y``) meets ``>=A.B``."""
    m = re.search(r">=\s*(\d+)\.(\d+)", requires_python)
    lo = (int(m[1]), int(m[2])) if m else (0, 0)
    v = re.search(r"(\d+)\.(\d+)", conda_spec)
    if not v:
        return False
    return (int(v[1]), int(v[2])) >= lo


def check(root: str | Path | None = None) -> list[str]:
    """Return the mismatches between ``root``/pyproject.toml and ``root``/environment.yml."""
    root = Path(root) if root is not None else ROOT
    problems: list[str] = []

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    runtime: dict[str, str | None] = {}
    for req in project.get("dependencies", []):
        name, op, version = _parse_req(req)
        if op != "==":
            problems.append(f"pyproject.toml: runtime dependency {req!r} is not pinned with ==")
        runtime[name] = version if op == "==" else None
    extras: dict[str, str | None] = {}
    for reqs in project.get("optional-dependencies", {}).values():
        for req in reqs:
            name, op, version = _parse_req(req)
            extras[name] = version if op == "==" else None

    env = _load_yaml(root / "environment.yml")
    conda_deps: list[str] = []
    pip_deps: list[str] = []
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            pip_deps.extend(str(x) for x in dep.get("pip") or [])
        else:
            conda_deps.append(str(dep))

    pythons = [d for d in conda_deps if re.match(r"^python\s*(?:[=<>!~]|$)", d)]
    if not pythons:
        problems.append("environment.yml: no python=X.Y in dependencies")
    for spec in pythons:
        if not _python_ok(project.get("requires-python", ""), spec):
            problems.append(
                f"environment.yml: {spec!r} does not satisfy pyproject requires-python "
                f"{project.get('requires-python')!r}"
            )
    if "pip" not in [re.split(r"[=<>!~ ]", d, maxsplit=1)[0] for d in conda_deps]:
        problems.append("environment.yml: 'pip' is missing from the conda dependencies")

    # Packages listed in the conda section count too (someone may move numpy there).
    env_pins: dict[str, str | None] = {}
    installs_project = False
    for dep in pip_deps:
        stripped = dep.strip()
        if re.match(r"^(-e\s*)?\./?(\[.*\])?$", stripped):
            installs_project = True
            continue
        if stripped.startswith("-"):
            continue
        name, op, version = _parse_req(stripped)
        env_pins[name] = version if op == "==" else None
    for dep in conda_deps:
        name_part = re.split(r"[=<>!~ ]", dep, maxsplit=1)[0]
        name = _norm(name_part)
        if name in {"python", "pip"}:
            continue
        m = re.match(r"^[^=<>!~ ]+\s*==?\s*([^\s=]+)$", dep)
        env_pins[name] = m[1] if m else None
    if not installs_project:
        problems.append("environment.yml: the pip section does not install the project ('-e .')")

    for name, version in sorted(runtime.items()):
        if name not in env_pins:
            problems.append(f"environment.yml: missing {name}=={version}")
        elif version is not None and env_pins[name] != version:
            problems.append(
                f"{name}: pyproject.toml pins {version}, environment.yml has {env_pins[name]}"
            )
    for name, version in sorted(env_pins.items()):
        if name in runtime:
            continue
        if name in extras:
            if extras[name] != version:
                problems.append(
                    f"{name}: pyproject.toml extra pins {extras[name]}, "
                    f"environment.yml has {version}"
                )
        else:
            problems.append(f"environment.yml: {name} is not a dependency in pyproject.toml")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    problems = check(args[0] if args else None)
    for p in problems:
        print(p)
    if not problems:
        print("pyproject.toml and environment.yml agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
