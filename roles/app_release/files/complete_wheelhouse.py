#!/usr/bin/env python3
"""Add to a wheelhouse the dependencies that only the *hosts'* Python needs.

`pip wheel` on the controller evaluates environment markers for the controller's
interpreter: with Python 3.11.7 there, `redis` skips `async-timeout; python_full_version
< "3.11.3"`, which Debian 12's Python 3.11.2 needs, and `pip download --python-version`
does not apply to markers. This script re-evaluates every wheel's Requires-Dist for the
target interpreter (described on the command line) and downloads the missing wheels
(`pip download --no-deps --only-binary=:all:` for the target's tags) until nothing is
missing. Prints a JSON summary: {"added": [...]}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename


def wheel_requirements(path: Path) -> list[Requirement]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode("utf-8"))
    return [Requirement(r) for r in meta.get_all("Requires-Dist") or []]


def complete(
    wheelhouse: Path,
    requirement: str,
    python_full_version: str,
    machine: str,
    glibc: str,
    python: str = sys.executable,
) -> list[str]:
    """Download into wheelhouse what requirement needs on the target interpreter; the
    requirements added. Raises RuntimeError if the closure does not converge."""
    major, minor, _ = python_full_version.split(".", 2)
    env = default_environment()
    env.update(
        python_version=f"{major}.{minor}",
        python_full_version=python_full_version,
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        platform_machine=machine,
    )
    glibc_major, glibc_minor = (int(x) for x in glibc.split(".")[:2])
    platforms = [f"manylinux_{glibc_major}_{m}_{machine}" for m in range(glibc_minor, 16, -1)]
    platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
    pip_target = [
        "--python-version",
        f"{major}.{minor}",
        "--implementation",
        "cp",
        "--abi",
        f"cp{major}{minor}",
        "--only-binary=:all:",
    ]
    for platform in platforms:
        pip_target += ["--platform", platform]

    added: list[str] = []
    for _ in range(50):  # each round adds at least one wheel or stops
        present = {}
        for whl in wheelhouse.glob("*.whl"):
            name = canonicalize_name(parse_wheel_filename(whl.name)[0])
            present[name] = whl
        # Walk the requirement graph from the top with the target's markers and extras.
        wanted: dict[str, Requirement] = {}
        extras_of: dict[str, set[str]] = {}
        todo = [Requirement(requirement)]
        missing: list[Requirement] = []
        while todo:
            req = todo.pop()
            name = canonicalize_name(req.name)
            new_extras = set(req.extras) - extras_of.get(name, set())
            if name in wanted and not new_extras:
                continue
            wanted[name] = req
            extras_of.setdefault(name, set()).update(req.extras)
            if name not in present:
                missing.append(req)
                continue
            for dep in wheel_requirements(present[name]):
                if dep.marker is None or any(
                    dep.marker.evaluate({**env, "extra": extra})
                    for extra in (extras_of[name] or {""})
                ):
                    todo.append(dep)
        if not missing:
            return added
        for req in missing:
            spec = f"{req.name}{req.specifier}"
            cmd = [
                python,
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--no-deps",
                "--dest",
                str(wheelhouse),
                *pip_target,
                spec,
            ]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            added.append(spec)
    raise RuntimeError("wheelhouse: dependency closure did not converge")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--wheelhouse", required=True, type=Path)
    ap.add_argument("--requirement", required=True, help="top-level requirement, e.g. app==1.0")
    ap.add_argument("--python-full-version", required=True, help="e.g. 3.11.2")
    ap.add_argument("--machine", required=True, help="e.g. x86_64")
    ap.add_argument("--glibc", required=True, help="e.g. 2.36")
    ap.add_argument("--python", default=sys.executable, help="python that runs pip download")
    args = ap.parse_args()
    try:
        added = complete(
            args.wheelhouse,
            args.requirement,
            args.python_full_version,
            args.machine,
            args.glibc,
            args.python,
        )
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps({"added": added}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
