#!/usr/bin/env python3
"""Build one application release on the controller, once per content.

    build_release.py --spec SPEC.json      (or --spec - to read it from stdin)

The spec (JSON) names the source - {"path": DIR} (an installable project or a plain
source tree), {"git": URL, "ref": REF} or {"wheelhouse": DIR} - and the build settings:
kind (auto|project|tree), distribution, version, requirements (a file in the source),
extra_requirements (added only when the app does not pin them), static_dir (relative to
the import root), target (the hosts' Python: {"python", "machine", "glibc"}), build_dir,
and check (true: report, build nothing).

The release is named <version>-<content id>. The id is a hash of the source (every file of
the tree, or the git commit, or the wheels) and of the build settings: edited code is
always a new release, and identical code is the same release, found built without
running pip. <build_dir>/<release>/ holds release.tar (wheelhouse/*.whl, install.txt and,
for a tree, app/), static.tar (the static folder) and release.json, written last: a
release is built in a temporary directory next to it and renamed into place when complete.

Prints one JSON object: release, version, content_id, kind, distribution, archive,
static_archive, install (what the hosts install with --no-index) and changed. Exit 2 on
bad input (a one-line message naming the setting), 1 when the build fails (pip's output).
In check mode a release not built yet reports changed: true and the install list it
expects (a tree's requirements, a project's own pin, the extras it does not pin directly).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent))
import complete_wheelhouse as cw  # noqa: E402 - a sibling script, not a package
from packaging.requirements import InvalidRequirement, Requirement  # noqa: E402
from packaging.utils import canonicalize_name, parse_wheel_filename  # noqa: E402
from packaging.version import InvalidVersion, Version  # noqa: E402

# Bumped when the builder changes what a release holds: every release gets a new name.
LAYOUT = 1
# Never part of a release, at any depth.
EXCLUDED_DIRS = {
    ".git",
    "__pycache__",
    "venv",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".tox",
    "node_modules",
}
# Build output folders, excluded at the top of the source only (a package may well have
# a static/dist/ folder of its own).
EXCLUDED_TOP_DIRS = {"build", "dist"}
RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
KINDS = ("auto", "project", "tree")
STALE_SECONDS = 24 * 3600  # temporary directories of killed builds older than this go


class BadInput(Exception):
    """Exit 2: the spec cannot be built as given (the message names the setting)."""


class BuildFailed(Exception):
    """Exit 1: pip or git failed."""


LOG: list[str] = []


def log(message: str) -> None:
    """Note what the build does; shown on stderr after a build, not with a bad-input error
    (whose message is one line)."""
    LOG.append(f"build_release: {message}")


# --- the source tree ------------------------------------------------------------------


def excluded(rel: Path, is_dir: bool) -> bool:
    """Whether a path of the source (relative to its root) stays out of the release."""
    name = rel.name
    if is_dir:
        if name in EXCLUDED_DIRS or name.startswith(".venv") or name.endswith(".egg-info"):
            return True
        return len(rel.parts) == 1 and name in EXCLUDED_TOP_DIRS
    return name.endswith(".pyc")


def tree_files(root: Path) -> list[tuple[str, Path]]:
    """The files that make the release: sorted (relative posix path, path). Symbolic links
    are followed (their content counts and ships); dangling ones are left out."""
    found: list[tuple[str, Path]] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a link loop
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not excluded(rel_dir / d, True))
        for name in filenames:
            rel = rel_dir / name
            path = Path(dirpath) / name
            if not excluded(rel, False) and path.is_file():
                found.append((rel.as_posix(), path))
    return sorted(found)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for rel, path in tree_files(root):
        digest.update(rel.encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def copy_tree(root: Path, dest: Path) -> None:
    """Copy what tree_files lists (so the copy is exactly what the id hashes)."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, path in tree_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def wheels_digest(wheels: list[Path]) -> str:
    digest = hashlib.sha256()
    for whl in wheels:
        digest.update(whl.name.encode() + b"\0" + str(whl.stat().st_size).encode() + b"\0")
        digest.update(whl.read_bytes())
    return digest.hexdigest()


# --- subprocesses -----------------------------------------------------------------------


def run(argv: list[str], what: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        command = " ".join(str(a) for a in argv)
        raise BuildFailed(f"{what} failed (exit {proc.returncode}): {command}\n{tail}")
    return proc


def pip(args: list[str], cwd: Path | None = None) -> None:
    argv = [sys.executable, "-m", "pip", *args[:1], "--disable-pip-version-check", *args[1:]]
    log(" ".join(["pip", *args]))
    run(argv, f"pip {args[0]}", cwd=cwd)


# --- git --------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def git_export(url: str, ref: str, build_dir: Path, dest: Path) -> str:
    """Mirror url under build_dir/git/, resolve ref, export that commit into dest; its sha."""
    if not shutil.which("git"):
        raise BadInput("flaskfleet_app.source.git: git is not installed on the controller")
    if ref.startswith("-") or not ref.strip():
        raise BadInput(f"flaskfleet_app.source.ref={ref!r}: a branch, tag or commit")
    name = hashlib.sha1(url.encode()).hexdigest()  # noqa: S324 - a directory name
    mirror = build_dir / "git" / name
    with locked(build_dir / "git" / f"{name}.lock"):
        if not (mirror / "HEAD").is_file():
            shutil.rmtree(mirror, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=mirror.parent))
            try:
                run(["git", "clone", "--mirror", "--quiet", "--", url, str(tmp)], "git clone")
            except BuildFailed as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                last = str(exc).strip().splitlines()[-1]
                raise BadInput(f"flaskfleet_app.source.git: cannot clone {url}: {last}") from exc
            tmp.rename(mirror)
        else:
            try:
                run(
                    ["git", "-C", str(mirror), "fetch", "--quiet", "--prune", "origin"], "git fetch"
                )
            except BuildFailed:
                # A full commit id already mirrored cannot have moved; anything else could.
                if not re.fullmatch(r"[0-9a-f]{40}", ref):
                    raise
                log(f"git fetch of {url} failed; {ref} is taken from the mirror")
        proc = subprocess.run(
            ["git", "-C", str(mirror), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BadInput(
                f"flaskfleet_app.source.ref: {ref!r} is no branch, tag or commit of {url}"
            )
        sha = proc.stdout.strip()
        tar_path = dest.parent / f"{dest.name}.tar"
        run(
            ["git", "-C", str(mirror), "archive", "--format=tar", "-o", str(tar_path), sha],
            "git archive",
        )
    try:
        with tarfile.open(tar_path) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # Python < 3.11.4: git archive writes relative names only
                tar.extractall(dest)  # noqa: S202
    except (tarfile.TarError, OSError) as exc:
        raise BuildFailed(f"extracting git archive of {sha}: {exc}") from exc
    finally:
        tar_path.unlink(missing_ok=True)
    return sha


# --- requirements files -----------------------------------------------------------------


@dataclass
class Entry:
    text: str  # the requirement as written, without hashes and per-line options
    req: Requirement
    hashes: set[str] = field(default_factory=set)  # "sha256:<hex>"


OPTION_WITH_VALUE = re.compile(r"\s+--?[A-Za-z][\w-]*(?:=|\s+)\S+")


def logical_lines(path: Path) -> Iterator[str]:
    pending = ""
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            yield line
    if pending.strip():
        yield pending.strip()


def parse_requirements(path: Path, setting: str, _depth: int = 0) -> tuple[list, list]:
    """(requirements, constraints) of a pip requirements file, following -r and -c."""
    if _depth > 10:
        raise BadInput(f"{setting}: {path.name}: -r/-c includes nest too deep")
    reqs: list[Entry] = []
    constraints: list[Entry] = []
    for line in logical_lines(path):
        include = re.match(r"^(-r|--requirement|-c|--constraint)(?:=|\s+)(\S+)$", line)
        if include:
            inner = path.parent / include.group(2)
            if not inner.is_file():
                raise BadInput(f"{setting}: {path.name} includes {inner}, which is no file")
            more, more_constraints = parse_requirements(inner, setting, _depth + 1)
            if include.group(1) in ("-r", "--requirement"):
                reqs += more
            else:
                constraints += more
            constraints += more_constraints
            continue
        if re.match(r"^(-e|--editable)\b", line):
            raise BadInput(f"{setting}: {path.name}: {line!r}: an editable install cannot ship")
        if line.startswith("-"):
            continue  # --index-url, --find-links, --pre, ...: pip's business
        hashes = set(re.findall(r"--hash(?:=|\s+)(\S+)", line))
        text = OPTION_WITH_VALUE.sub("", " " + line).strip()
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise BadInput(
                f"{setting}: {path.name}: {text!r} is no name-based requirement "
                f"(use name==version or name @ URL): {exc}"
            ) from exc
        reqs.append(Entry(text, req, hashes))
    return reqs, constraints


def pins_of(entries: list[Entry], env: dict) -> tuple[dict[str, str], dict[str, set[str]]]:
    """{name: "==X"} and {name: {sha256 hex}} of the exact pins that apply to the target."""
    pins: dict[str, str] = {}
    hashes: dict[str, set[str]] = {}
    for entry in entries:
        req = entry.req
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "==="):
            name = canonicalize_name(req.name)
            pins[name] = f"=={specs[0].version}"
            hexes = {h.split(":", 1)[1] for h in entry.hashes if h.startswith("sha256:")}
            if hexes:
                hashes.setdefault(name, set()).update(hexes)
    return pins, hashes


def plain(req: Requirement, version: str | None = None) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    spec = f"=={version}" if version is not None else str(req.specifier)
    return f"{req.name}{extras}{spec}"


# --- the spec ---------------------------------------------------------------------------


@dataclass
class Spec:
    source_type: str  # path | git | wheelhouse
    source: str
    ref: str
    kind: str
    distribution: str
    version: str
    requirements: str
    extras: list[str]
    static_dir: str
    target: dict
    build_dir: Path
    check: bool

    def identity(self) -> dict:
        """The settings that change the build (with the builder's layout)."""
        return {
            "layout": LAYOUT,
            "source": self.source_type,
            "kind": self.kind,
            "distribution": self.distribution,
            "version": self.version,
            "requirements": self.requirements,
            "extra_requirements": self.extras,
            "static_dir": self.static_dir,
            "target": self.target,
        }


def text_field(data: dict, key: str, setting: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadInput(f"{setting} must be a string, not {value!r}")
    return value.strip()


def relative_path(value: str, setting: str, example: str) -> str:
    norm = str(PurePosixPath(value))
    if value.startswith("/") or ".." in norm.split("/") or norm == ".":
        raise BadInput(f"{setting}={value!r}: a path relative to {example}")
    return norm


def load_spec(data) -> Spec:
    if not isinstance(data, dict):
        raise BadInput("--spec: the spec must be a JSON object")
    source = data.get("source")
    if not isinstance(source, dict):
        raise BadInput(
            "flaskfleet_app.source must be a mapping: {path}, {git, ref} or {wheelhouse}"
        )
    given = [k for k in ("path", "git", "wheelhouse") if source.get(k)]
    if len(given) != 1:
        raise BadInput(
            "flaskfleet_app.source needs exactly one of path, git or wheelhouse "
            f"(got {', '.join(given) or 'none'})"
        )
    source_type = given[0]
    location = source[source_type]
    if not isinstance(location, str):
        raise BadInput(f"flaskfleet_app.source.{source_type} must be a string")
    if source_type != "git":
        location = str(Path(location).expanduser().absolute())
        if not Path(location).is_dir():
            raise BadInput(
                f"flaskfleet_app.source.{source_type}: {location} is not a directory "
                "on the controller"
            )
    ref = text_field(source, "ref", "flaskfleet_app.source.ref") or "HEAD"

    kind = text_field(data, "kind", "flaskfleet_app.kind") or "auto"
    if kind not in KINDS:
        raise BadInput(f"flaskfleet_app.kind={kind!r}: use auto, project or tree")
    version = text_field(data, "version", "flaskfleet_app.version")
    if version and not RELEASE.match(version):
        raise BadInput(
            f"flaskfleet_app.version={version!r}: letters, digits, '.', '_', '+', '-' only"
        )
    requirements = text_field(data, "requirements", "flaskfleet_app.requirements")
    if requirements:
        requirements = relative_path(
            requirements, "flaskfleet_app.requirements", "the source directory"
        )
    static_dir = text_field(data, "static_dir", "flaskfleet_app.static.dir")
    if static_dir:
        static_dir = relative_path(
            static_dir, "flaskfleet_app.static.dir", "the import root, e.g. myapp/static"
        )

    extras = data.get("extra_requirements") or []
    setting = "app_release_extra_requirements (flaskfleet_app.gunicorn.requirement)"
    if not isinstance(extras, list) or not all(isinstance(e, str) for e in extras):
        raise BadInput(f"{setting} must be a list of requirement strings")
    for extra in extras:
        try:
            Requirement(extra)
        except InvalidRequirement as exc:
            raise BadInput(f"{setting}: {extra!r} is no requirement: {exc}") from exc

    target = data.get("target")
    if not isinstance(target, dict):
        raise BadInput("target must be the hosts' Python: {python, machine, glibc}")
    python = str(target.get("python") or "")
    if not re.fullmatch(r"\d+\.\d+\.\d+\S*", python):
        raise BadInput(f"target.python={python!r}: the hosts' Python version, e.g. 3.11.2")
    if not re.fullmatch(r"[A-Za-z0-9_]+", str(target.get("machine") or "")):
        raise BadInput(f"target.machine={target.get('machine')!r}: e.g. x86_64")
    if not re.fullmatch(r"\d+\.\d+", str(target.get("glibc") or "")):
        raise BadInput(
            f"target.glibc={target.get('glibc')!r}: the hosts' glibc version, e.g. 2.36 "
            "(the hosts must run a glibc Linux)"
        )
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if ".".join(python.split(".")[:2]) != here:
        raise BadInput(
            f"app_release_build_python: the controller builds with Python {here} "
            f"({sys.executable}) but the hosts run {python}: wheels with compiled code "
            "would not fit them; use a controller Python of the hosts' minor version"
        )

    build_dir = data.get("build_dir")
    if not isinstance(build_dir, str) or not build_dir.strip():
        raise BadInput("app_release_build_dir: the controller directory for releases is required")
    check = data.get("check", False)
    if not isinstance(check, bool):
        raise BadInput(f"check must be true or false, not {check!r}")
    return Spec(
        source_type=source_type,
        source=location,
        ref=ref,
        kind=kind,
        distribution=text_field(data, "distribution", "flaskfleet_app.distribution"),
        version=version,
        requirements=requirements,
        extras=list(extras),
        static_dir=static_dir,
        target={k: str(v) for k, v in target.items()},
        build_dir=Path(build_dir).expanduser().absolute(),
        check=check,
    )


# --- what a source is -------------------------------------------------------------------


def read_pyproject(src: Path, where: str) -> dict | None:
    path = src / "pyproject.toml"
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{where}: pyproject.toml is not readable TOML: {exc}") from exc


def detect_kind(spec: Spec, src: Path, where: str, location: str) -> str:
    """project or tree. A pyproject.toml with neither [project] nor [build-system] (only
    tool settings) does not make a project of a tree that has its requirements file."""
    pyproject = read_pyproject(src, where) if spec.kind != "tree" else None
    tree_requirements = spec.requirements or "requirements.txt"
    has_requirements = (src / tree_requirements).is_file()
    if spec.kind == "project":
        if pyproject is None and not (src / "setup.py").is_file():
            raise BadInput(
                f"flaskfleet_app.kind is project but {location} has no pyproject.toml or setup.py"
            )
        return "project"
    if spec.kind == "auto":
        if (src / "setup.py").is_file():
            return "project"
        if pyproject is not None and (
            "project" in pyproject or "build-system" in pyproject or not has_requirements
        ):
            return "project"
    if not has_requirements:
        if spec.kind == "tree":
            raise BadInput(
                f"flaskfleet_app.requirements: {location} has no {tree_requirements} "
                "(a tree is built from its requirements file)"
            )
        raise BadInput(f"{where} has neither pyproject.toml/setup.py nor {tree_requirements}")
    return "tree"


def files_under(folder: Path) -> list[tuple[str, Path]]:
    """Every file under a folder (already filtered), sorted (relative posix path, path)."""
    if not folder.is_dir():
        return []
    return sorted((p.relative_to(folder).as_posix(), p) for p in folder.rglob("*") if p.is_file())


def static_from_dir(folder: Path, dest: Path) -> None:
    for rel, path in files_under(folder):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / rel)


def static_from_wheel(wheel: Path, static_dir: str, dest: Path) -> None:
    prefix = static_dir + "/"
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                rel = member[len(prefix) :]
                if ".." in rel.split("/"):
                    continue
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                (dest / rel).write_bytes(zf.read(member))


def no_static(static_dir: str, where: str) -> BadInput:
    return BadInput(f"flaskfleet_app.static.dir: no files under {static_dir}/ in {where}")


def normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Readable by everyone, owned by root: the hosts' application user reads the code."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
    return info


def add_files(tar: tarfile.TarFile, files: list[tuple[str, Path]], prefix: str) -> None:
    """Add files (sorted) under prefix, with an entry for each folder before its files."""
    dirs = {str(PurePosixPath(prefix + rel).parent) for rel, _ in files}
    dirs = {str(p) for d in dirs for p in (PurePosixPath(d), *PurePosixPath(d).parents)}
    for name in sorted(dirs - {"."}):
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mtime = int(time.time())
        tar.addfile(normalized(info))
    for rel, path in files:
        tar.add(path, arcname=prefix + rel, recursive=False, filter=normalized)


def wheels_named(wheelhouse: Path, name: str) -> list[Path]:
    want = canonicalize_name(name)
    return sorted(
        w
        for w in wheelhouse.glob("*.whl")
        if canonicalize_name(parse_wheel_filename(w.name)[0]) == want
    )


def wheel_version(whl: Path) -> str:
    return str(parse_wheel_filename(whl.name)[1])


def single_versions(wheelhouse: Path) -> dict[str, str]:
    """{canonical name: version} of the distributions with a single version in a wheelhouse."""
    versions: dict[str, set[str]] = {}
    for whl in wheelhouse.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(whl.name)
        versions.setdefault(canonicalize_name(name), set()).add(str(version))
    return {n: v.pop() for n, v in versions.items() if len(v) == 1}


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


# --- the build --------------------------------------------------------------------------


class Builder:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.env = cw.target_environment(spec.target["python"], spec.target["machine"])
        self.temps: list[Path] = []

    def tempdir(self, prefix: str) -> Path:
        self.spec.build_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f".tmp-{prefix}-", dir=self.spec.build_dir))
        self.temps.append(path)
        return path

    def cleanup(self) -> None:
        for path in self.temps:
            shutil.rmtree(path, ignore_errors=True)

    def applies(self, req: Requirement) -> bool:
        return req.marker is None or req.marker.evaluate({**self.env, "extra": ""})

    # The source, its id, and what the release is called --------------------------------

    def resolve(self) -> None:
        spec = self.spec
        if spec.source_type == "path":
            self.src = Path(spec.source)
            self.location = str(self.src)
            self.source_digest = tree_digest(self.src)
        elif spec.source_type == "git":
            export = self.tempdir("git")
            self.src = export / "tree"
            self.location = f"{spec.source} at {spec.ref}"
            self.source_digest = git_export(spec.source, spec.ref, spec.build_dir, self.src)
        else:
            self.src = Path(spec.source)
            self.location = str(self.src)
            self.source_wheels = sorted(self.src.glob("*.whl"))
            if not self.source_wheels:
                raise BadInput(f"flaskfleet_app.source.wheelhouse: {self.src} holds no .whl file")
            self.source_digest = wheels_digest(self.source_wheels)
        self.where = f"flaskfleet_app.source.{spec.source_type}: {self.location}"
        digest = hashlib.sha256(json.dumps(spec.identity(), sort_keys=True).encode())
        digest.update(b"\0" + spec.source_type.encode() + b"\0" + self.source_digest.encode())
        self.content_id = digest.hexdigest()

        self.distribution = spec.distribution
        self.version = spec.version
        self.requirements = ""
        self.req_file: Path | None = None
        self.entries: list[Entry] = []
        self.constraints: list[Entry] = []
        if spec.source_type == "wheelhouse":
            self.resolve_wheelhouse()
        else:
            self.kind = detect_kind(spec, self.src, self.where, self.location)
            requirements = spec.requirements or ("requirements.txt" if self.kind == "tree" else "")
            self.requirements = requirements
            if requirements:
                self.req_file = self.src / requirements
                if not self.req_file.is_file():
                    raise BadInput(
                        f"flaskfleet_app.requirements: {requirements} is not a file in "
                        f"{self.location}"
                    )
                parts = PurePosixPath(requirements).parts
                if excluded(Path(requirements), False) or any(
                    excluded(Path(*parts[: i + 1]), True) for i in range(len(parts) - 1)
                ):
                    raise BadInput(
                        f"flaskfleet_app.requirements: {requirements} lies in a folder "
                        "that is no part of a release (build/, dist/, .venv, ...)"
                    )
                self.entries, self.constraints = parse_requirements(
                    self.req_file, "flaskfleet_app.requirements"
                )
            if self.kind == "project":
                self.resolve_project()
            else:
                self.resolve_tree()
        self.hashed = any(e.hashes for e in self.entries)
        self.release = f"{self.version}-{self.content_id[:12]}"
        if not RELEASE.match(self.release):
            raise BadInput(
                f"flaskfleet_app.version: {self.version!r} makes no valid release name; set it"
            )
        self.out_dir = self.spec.build_dir / self.release

    def resolve_wheelhouse(self) -> None:
        self.kind = "wheelhouse"
        if not self.distribution:
            raise BadInput(
                "flaskfleet_app.distribution is required with a wheelhouse source: "
                "the name of the application's wheel"
            )
        app_wheels = wheels_named(self.src, self.distribution)
        if not app_wheels:
            raise BadInput(
                f"flaskfleet_app.distribution: no {self.distribution} wheel in {self.src}"
            )
        versions = sorted({wheel_version(w) for w in app_wheels}, key=Version)
        matching = [v for v in versions if self.version and same_version(v, self.version)]
        if matching:
            self.app_version = matching[0]
        elif len(versions) == 1:
            self.app_version = versions[0]
        else:
            raise BadInput(
                f"flaskfleet_app.version: {self.src} holds {self.distribution} "
                f"{', '.join(versions)}; set the version to one of them"
            )
        self.version = self.version or self.app_version

    def resolve_project(self) -> None:
        pyproject = read_pyproject(self.src, self.where) or {}
        project = pyproject.get("project") or {}
        if not self.distribution:
            self.distribution = str(project.get("name") or "")
            if not self.distribution:
                raise BadInput(
                    f"flaskfleet_app.distribution: {self.location} names no [project] name "
                    "in pyproject.toml; set the distribution"
                )
        if not self.version:
            if project.get("version") and "version" not in (project.get("dynamic") or []):
                self.version = str(project["version"])
            else:
                log("the project's version is not static in pyproject.toml: the release is 0-<id>")
                self.version = "0"

    def resolve_tree(self) -> None:
        if not self.version and self.distribution:
            # A tree that pins its own distribution (e.g. a wheel it ships) takes its version.
            for entry in self.entries:
                pin = list(entry.req.specifier)
                if (
                    canonicalize_name(entry.req.name) == canonicalize_name(self.distribution)
                    and len(pin) == 1
                    and pin[0].operator == "=="
                    and self.applies(entry.req)
                ):
                    self.version = pin[0].version
        self.version = self.version or "0"
        if self.spec.static_dir:
            prefix = self.spec.static_dir + "/"
            if not any(rel.startswith(prefix) for rel, _ in tree_files(self.src)):
                raise no_static(self.spec.static_dir, self.location)

    # Results ---------------------------------------------------------------------------

    def result(self, install: list[str]) -> dict:
        return {
            "release": self.release,
            "version": self.version,
            "content_id": self.content_id,
            "kind": self.kind,
            "distribution": self.distribution,
            "archive": str(self.out_dir / "release.tar"),
            "static_archive": str(self.out_dir / "static.tar") if self.spec.static_dir else "",
            "install": install,
        }

    def built(self) -> dict | None:
        done = self.out_dir / "release.json"
        try:
            result = json.loads(done.read_text())
        except (OSError, ValueError):
            return None
        archives = [result.get("archive"), result.get("static_archive")]
        if not all(Path(a).is_file() for a in archives if a):
            return None
        return result

    def tree_install(self, versions: dict[str, str]) -> list[str]:
        """A tree's requirement lines as the hosts install them: those whose markers hold for
        the hosts (markers dropped), a URL replaced by the version built from it."""
        install = []
        for entry in self.entries:
            req = entry.req
            if not self.applies(req):
                continue
            if req.url or req.marker is not None:
                version = versions.get(canonicalize_name(req.name))
                install.append(plain(req, version if req.url else None))
            else:
                install.append(entry.text)
        return install

    def expected_install(self) -> list[str]:
        """What a build would install (check mode, nothing built yet): the direct
        requirements stand for what the build would contain."""
        pins, _ = pins_of(self.entries + self.constraints, self.env)
        if self.kind == "tree":
            install = self.tree_install({})
            names = {canonicalize_name(Requirement(r).name) for r in install}
            pins = {}
        elif self.kind == "wheelhouse":
            install = [f"{self.distribution}=={self.app_version}"]
            names = {canonicalize_name(self.distribution)}
            pins = {n: f"=={v}" for n, v in single_versions(self.src).items()}
        else:
            install = [f"{self.distribution}=={self.version}"]
            deps = ((read_pyproject(self.src, self.where) or {}).get("project") or {}).get(
                "dependencies"
            ) or []
            names = {canonicalize_name(self.distribution)}
            for dep in deps:
                with contextlib.suppress(InvalidRequirement):
                    names.add(canonicalize_name(Requirement(dep).name))
            if not self.hashed:
                pins = {}
        for extra in self.spec.extras:
            req = Requirement(extra)
            name = canonicalize_name(req.name)
            if not self.applies(req) or name in names:
                continue
            install.append(f"{req.name}{pins[name]}" if name in pins else extra)
        return install

    # Building --------------------------------------------------------------------------

    def build(self) -> dict:
        spec = self.spec
        work = self.tempdir(self.release)
        wheelhouse = work / "wheelhouse"
        wheelhouse.mkdir()
        code = work / "app"
        if self.kind != "wheelhouse":
            copy_tree(self.src, code)
            if spec.source_type == "path" and tree_digest(code) != self.source_digest:
                raise BuildFailed(f"{self.src} changed while it was being built; run again")
        req_file = code / self.requirements if self.requirements else None
        wheel_dir = ["--wheel-dir", str(wheelhouse)]
        hash_check = ["--require-hashes"] if self.hashed else []

        if self.kind == "wheelhouse":
            for whl in self.source_wheels:
                shutil.copy2(whl, wheelhouse / whl.name)
            if wheels_digest(sorted(wheelhouse.glob("*.whl"))) != self.source_digest:
                raise BuildFailed(f"{self.src} changed while it was being copied; run again")
            install = [f"{self.distribution}=={self.app_version}"]
        elif self.kind == "project":
            if req_file is not None and self.hashed:
                pip(["wheel", *wheel_dir, *hash_check, "-r", str(req_file)], cwd=code)
                pip(["wheel", *wheel_dir, "--no-deps", str(code)], cwd=code)
            elif req_file is not None:
                pip(["wheel", *wheel_dir, "-c", str(req_file), str(code)], cwd=code)
            else:
                pip(["wheel", *wheel_dir, str(code)], cwd=code)
            app_wheels = wheels_named(wheelhouse, self.distribution)
            if not app_wheels:
                built = ", ".join(sorted(p.name for p in wheelhouse.glob("*.whl")))
                raise BadInput(
                    f"flaskfleet_app.distribution: the build of {self.src} made no "
                    f"{self.distribution} wheel (it made {built})"
                )
            self.app_version = max((wheel_version(w) for w in app_wheels), key=Version)
            install = [f"{self.distribution}=={self.app_version}"]
        else:
            if self.entries:
                pip(["wheel", *wheel_dir, *hash_check, "-r", str(req_file)], cwd=code)
            install = self.tree_install(single_versions(wheelhouse))
        extras = self.add_extras(work, wheelhouse, install)
        self.complete(wheelhouse, install, extras)
        install += extras
        self.fit_wheels(wheelhouse, install)

        (work / "install.txt").write_text("".join(f"{r}\n" for r in install))
        with tarfile.open(work / "release.tar.part", "w") as tar:
            add_files(tar, files_under(wheelhouse), "wheelhouse/")
            add_files(tar, [("install.txt", work / "install.txt")], "")
            if self.kind == "tree":
                add_files(tar, files_under(code), "app/")
        (work / "release.tar.part").rename(work / "release.tar")
        if spec.static_dir:
            self.static(work, wheelhouse, code)

        result = self.result(install)
        for leftover in ("wheelhouse", "app", "static"):
            shutil.rmtree(work / leftover, ignore_errors=True)
        (work / "release.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        if self.out_dir.exists():
            if self.built() is not None:  # a concurrent build of the same release won
                return {**result, "changed": True}
            shutil.rmtree(self.out_dir)  # an incomplete leftover
        try:
            work.rename(self.out_dir)
        except OSError:
            if self.built() is None:
                raise
        return {**result, "changed": True}

    def add_extras(self, work: Path, wheelhouse: Path, install: list[str]) -> list[str]:
        """The extras to install besides the app (the app's own pins win): none for what the
        app already installs; name==<the built version> for what the build holds but the
        app does not install (a hash-checked lock pins more than the app needs); the others
        built, with the app's versions of anything they share."""
        present = cw.present_wheels(wheelhouse)
        installed: set[str] = set()
        for requirement in install:
            installed |= set(cw.closure(present, requirement, self.env)[0])
        versions = single_versions(wheelhouse)
        extras, to_build = [], []
        for extra in self.spec.extras:
            req = Requirement(extra)
            name = canonicalize_name(req.name)
            if not self.applies(req) or name in installed:
                continue
            if name in present:
                pinned = plain(req, versions.get(name))
                log(f"{extra}: the build holds {pinned}, which is installed instead")
                extras.append(pinned)
            else:
                extras.append(extra)
                to_build.append(extra)
        if to_build:
            pins = work / "app-versions.txt"
            pins.write_text(
                "".join(f"{n}=={v}\n" for n, v in sorted(single_versions(wheelhouse).items()))
            )
            pip(
                [
                    "wheel",
                    "--wheel-dir",
                    str(wheelhouse),
                    "--find-links",
                    str(wheelhouse),
                    "-c",
                    str(pins),
                    *to_build,
                ]
            )
        return extras

    def complete(self, wheelhouse: Path, install: list[str], extras: list[str]) -> None:
        """Add what the hosts' Python needs beyond the controller's (environment markers)."""
        target = self.spec.target
        pins, hashes = pins_of(self.entries + self.constraints, self.env)
        for requirement in install + extras:
            try:
                added = cw.complete(
                    wheelhouse,
                    requirement,
                    target["python"],
                    target["machine"],
                    target["glibc"],
                    sys.executable,
                    pins=pins,
                    hashes=hashes if self.hashed else None,
                    strict=self.hashed and requirement not in extras,
                )
            except cw.LockIncomplete as exc:
                raise BadInput(
                    f"flaskfleet_app.requirements: {self.requirements} is hash-checked but "
                    f"incomplete for the hosts: {exc}; add it with its hashes"
                ) from exc
            except cw.CompletionError as exc:
                raise BuildFailed(str(exc)) from exc
            for spec in added:
                log(f"added for Python {target['python']}: {spec}")

    def fit_wheels(self, wheelhouse: Path, install: list[str]) -> None:
        """Replace wheels the hosts cannot install (built for the controller's platform) by
        the same versions for the hosts; drop unneeded ones that do not fit."""
        target = self.spec.target
        tags = cw.target_tags(target["python"], target["machine"], target["glibc"])
        present = cw.present_wheels(wheelhouse)
        needed: set[str] = set()
        for requirement in install:
            needed |= set(cw.closure(present, requirement, self.env)[0])
        _, hashes = pins_of(self.entries + self.constraints, self.env)
        for whl in sorted(wheelhouse.glob("*.whl")):
            name, version, _, wheel_tags = parse_wheel_filename(whl.name)
            if wheel_tags & tags:
                continue
            if canonicalize_name(name) not in needed:
                log(f"dropped {whl.name}: not needed on the hosts and does not fit them")
                whl.unlink()
                continue
            tmp = Path(tempfile.mkdtemp(prefix=".fit-", dir=wheelhouse.parent))
            try:
                cw.pip_download(
                    sys.executable,
                    tmp,
                    cw.target_pip_args(target["python"], target["machine"], target["glibc"]),
                    f"{name}=={version}",
                )
                fresh = next(tmp.glob("*.whl"))
                allowed = hashes.get(canonicalize_name(name)) if self.hashed else None
                if allowed and cw.sha256_file(fresh) not in allowed:
                    raise BuildFailed(f"{fresh.name}: its sha256 is not among the lock's hashes")
                whl.unlink()
                shutil.move(fresh, wheelhouse / fresh.name)
                log(f"replaced {whl.name} by {fresh.name} for the hosts")
            except cw.CompletionError as exc:
                raise BuildFailed(
                    f"{whl.name} was built for the controller and does not fit the hosts "
                    f"({json.dumps(target, sort_keys=True)}), and no wheel of {name} {version} "
                    f"for them was found: {exc}"
                ) from exc
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def static(self, work: Path, wheelhouse: Path, code: Path) -> None:
        static_dir = self.spec.static_dir
        folder = work / "static"
        folder.mkdir()
        if self.kind == "tree":
            static_from_dir(code / static_dir, folder)
            where = "the tree"
        else:
            app_wheel = [
                w
                for w in wheels_named(wheelhouse, self.distribution)
                if same_version(wheel_version(w), self.app_version)
            ][0]
            static_from_wheel(app_wheel, static_dir, folder)
            where = f"the {app_wheel.name} wheel"
        files = files_under(folder)
        if not files:
            raise no_static(static_dir, where)
        with tarfile.open(work / "static.tar.part", "w") as tar:
            add_files(tar, files, "")
        (work / "static.tar.part").rename(work / "static.tar")


def clean_stale(build_dir: Path) -> None:
    """Remove the temporary directories of builds killed long ago."""
    if not build_dir.is_dir():
        return
    now = time.time()
    for path in [*build_dir.glob(".tmp-*"), *build_dir.glob("git/.tmp-*")]:
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(path, ignore_errors=True)


def build_release(data) -> dict:
    spec = load_spec(data)
    builder = Builder(spec)
    try:
        builder.resolve()
        found = builder.built()
        if found is not None:
            return {**found, "changed": False}
        if spec.check:
            return {**builder.result(builder.expected_install()), "changed": True}
        clean_stale(spec.build_dir)
        return builder.build()
    finally:
        builder.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", required=True, help="spec JSON file, or - for stdin")
    args = ap.parse_args(argv)
    try:
        try:
            text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
        except OSError as exc:
            raise BadInput(f"--spec: cannot read {args.spec}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BadInput(f"--spec: {args.spec} is not JSON: {exc}") from exc
        result = build_release(data)
    except BadInput as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 2
    except BuildFailed as exc:
        print("\n".join([*LOG, f"build_release: {exc}"]), file=sys.stderr)
        return 1
    if LOG:
        print("\n".join(LOG), file=sys.stderr)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
