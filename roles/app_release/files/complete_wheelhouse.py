#!/usr/bin/env python3
"""Add to a wheelhouse the dependencies that only the *hosts'* Python needs.

`pip wheel` on the controller evaluates environment markers for the controller's
interpreter: with Python 3.11.7 there, `redis` skips `async-timeout; python_full_version
< "3.11.3"`, which Debian 12's Python 3.11.2 needs, and `pip download --python-version`
does not apply to markers. This script re-evaluates every wheel's Requires-Dist for the
target interpreter (described on the command line) and downloads the missing wheels
(`pip download --no-deps --only-binary=:all:` for the target's tags) until nothing is
missing. Prints a JSON summary: {"added": [...]}.

Also importable (build_release.py does): target_environment, target_platforms,
target_tags, target_pip_args, present_wheels, closure, pip_download,
sha256_file and complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename


class CompletionError(RuntimeError):
    """The wheelhouse cannot be completed for the target (the message says why)."""


class LockIncomplete(CompletionError):
    """A hash-checked lock does not cover a dependency the target needs."""


def wheel_requirements(path: Path) -> list[Requirement]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode("utf-8"))
    return [Requirement(r) for r in meta.get_all("Requires-Dist") or []]


def _major_minor(python_full_version: str) -> tuple[str, str]:
    major, minor = python_full_version.split(".")[:2]
    return major, minor


def target_environment(python_full_version: str, machine: str) -> dict[str, str]:
    """The PEP 508 marker environment of a CPython on Linux with this version and machine."""
    major, minor = _major_minor(python_full_version)
    env = default_environment()
    env.update(
        python_version=f"{major}.{minor}",
        python_full_version=python_full_version,
        implementation_name="cpython",
        implementation_version=python_full_version,
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        platform_machine=machine,
    )
    return env


def target_platforms(machine: str, glibc: str) -> list[str]:
    """Wheel platform tags a glibc Linux of this machine and glibc version runs, best first."""
    glibc_major, glibc_minor = (int(x) for x in glibc.split(".")[:2])
    platforms = [f"manylinux_{glibc_major}_{m}_{machine}" for m in range(glibc_minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    if glibc_major == 2:
        for floor, alias in legacy.items():
            if glibc_minor >= floor and (floor == 17 or machine in ("x86_64", "i686")):
                platforms.append(f"{alias}_{machine}")
    platforms.append(f"linux_{machine}")
    return platforms


def target_tags(python_full_version: str, machine: str, glibc: str) -> set[Tag]:
    """Every wheel tag pip on the target interpreter accepts."""
    major, minor = (int(x) for x in _major_minor(python_full_version))
    platforms = target_platforms(machine, glibc)
    abi = f"cp{major}{minor}"
    tags = set(cpython_tags((major, minor), abis=[abi], platforms=platforms))
    tags |= set(compatible_tags((major, minor), interpreter=abi, platforms=platforms))
    return tags


def target_pip_args(python_full_version: str, machine: str, glibc: str) -> list[str]:
    """`pip download` options that select wheels for the target interpreter."""
    major, minor = _major_minor(python_full_version)
    args = [
        "--python-version",
        f"{major}.{minor}",
        "--implementation",
        "cp",
        "--abi",
        f"cp{major}{minor}",
        "--only-binary=:all:",
    ]
    for platform in target_platforms(machine, glibc):
        args += ["--platform", platform]
    return args


def present_wheels(wheelhouse: Path) -> dict[str, Path]:
    """{canonical name: wheel} of a wheelhouse (one wheel per name is expected)."""
    return {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in wheelhouse.glob("*.whl")}


def closure(
    present: Mapping[str, Path], requirement: str, env: dict[str, str]
) -> tuple[dict[str, Requirement], list[tuple[Requirement, str]]]:
    """Walk the requirement graph from the top with the target's markers and extras.

    Returns the names reached ({name: requirement}) and the missing requirements, each
    with the name of the distribution that needs it ("" for the top)."""
    wanted: dict[str, Requirement] = {}
    extras_of: dict[str, set[str]] = {}
    top = Requirement(requirement)
    if top.marker is not None and not top.marker.evaluate({**env, "extra": ""}):
        return wanted, []
    todo: list[tuple[Requirement, str]] = [(top, "")]
    missing: list[tuple[Requirement, str]] = []
    while todo:
        req, parent = todo.pop()
        name = canonicalize_name(req.name)
        new_extras = set(req.extras) - extras_of.get(name, set())
        if name in wanted and not new_extras:
            continue
        first = name not in wanted
        wanted[name] = req
        extras_of.setdefault(name, set()).update(req.extras)
        if name not in present:
            if first:
                missing.append((req, parent))
            continue
        for dep in wheel_requirements(present[name]):
            if dep.marker is None or any(
                dep.marker.evaluate({**env, "extra": extra}) for extra in (extras_of[name] or {""})
            ):
                todo.append((dep, name))
    return wanted, missing


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(python: str, wheelhouse: Path, args: list[str], spec: str) -> None:
    cmd = [
        python,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-deps",
        "--dest",
        str(wheelhouse),
        *args,
        spec,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise CompletionError(f"pip download {spec} for the target failed:\n{tail}")


def complete(
    wheelhouse: Path,
    requirement: str,
    python_full_version: str,
    machine: str,
    glibc: str,
    python: str = sys.executable,
    pins: Mapping[str, str] | None = None,
    hashes: Mapping[str, set[str]] | None = None,
    strict: bool = False,
) -> list[str]:
    """Download into wheelhouse what requirement needs on the target interpreter; the
    requirements added.

    pins ({canonical name: "==X"}, e.g. from a lock) choose the version of a missing
    distribution; hashes ({canonical name: {sha256 hex}}) must then match the downloaded
    wheel. strict: a missing distribution the pins do not name is an error (LockIncomplete)
    instead of a download of its newest matching version. Raises CompletionError if a
    download fails or the closure does not converge."""
    env = target_environment(python_full_version, machine)
    pip_target = target_pip_args(python_full_version, machine, glibc)
    pins = pins or {}
    added: list[str] = []
    for _ in range(50):  # each round adds at least one wheel or stops
        _, missing = closure(present_wheels(wheelhouse), requirement, env)
        if not missing:
            return added
        for req, parent in missing:
            name = canonicalize_name(req.name)
            needed_by = f" (needed by {parent})" if parent else ""
            if name in pins:
                spec = f"{req.name}{req.specifier & SpecifierSet(pins[name])}"
            elif strict:
                raise LockIncomplete(
                    f"{req}{needed_by} is needed on Python {python_full_version} "
                    "but the lock does not pin it"
                )
            else:
                spec = f"{req.name}{req.specifier}"
            before = set(wheelhouse.glob("*.whl"))
            pip_download(python, wheelhouse, pip_target, spec)
            new = [w for w in wheelhouse.glob("*.whl") if w not in before]
            if hashes and name in hashes:
                for whl in new:
                    if sha256_file(whl) not in hashes[name]:
                        whl.unlink()
                        raise CompletionError(
                            f"{whl.name}{needed_by}: its sha256 is not among the lock's "
                            f"hashes for {req.name}"
                        )
            added.append(spec)
    raise CompletionError("wheelhouse: dependency closure did not converge")


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
