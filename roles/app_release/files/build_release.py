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
for a tree, app/), static.tar (the static folder) and release.json, written last.

Prints one JSON object: release, version, content_id, kind, distribution, archive,
static_archive, install (what the hosts install with --no-index) and changed. Exit 2 on
bad input (a one-line message naming the setting), 1 when the build fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from complete_wheelhouse import complete  # noqa: E402 - a sibling script, not a package
from packaging.requirements import InvalidRequirement, Requirement  # noqa: E402
from packaging.utils import canonicalize_name, parse_wheel_filename  # noqa: E402

EXCLUDED_DIRS = {
    ".git",
    "__pycache__",
    "build",
    "dist",
    "venv",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".tox",
    "node_modules",
}
RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class BadInput(Exception):
    """Exit 2: the spec cannot be built as given (the message names the setting)."""


class BuildFailed(Exception):
    """Exit 1: pip or git failed."""


def excluded(rel: Path) -> bool:
    for part in rel.parts:
        if part in EXCLUDED_DIRS or part.startswith(".venv") or part.endswith(".egg-info"):
            return True
    return rel.suffix == ".pyc"


def tree_files(root: Path) -> list[Path]:
    """Files of a source tree that make the release, sorted, as paths relative to root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not excluded(rel_dir / d))
        found += [rel_dir / f for f in filenames if not excluded(rel_dir / f)]
    return sorted(found)


def hash_tree(root: Path, digest) -> None:
    for rel in tree_files(root):
        path = root / rel
        digest.update(str(rel).encode() + b"\0")
        digest.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
        digest.update(b"\0")


def run(argv, what: str, cwd=None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise BuildFailed(f"{what} failed ({' '.join(map(str, argv[:6]))} ...):\n{tail}")
    return proc.stdout


def pip(*args) -> None:
    run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"], "pip " + args[0])


def git_checkout(url: str, ref: str, build_dir: Path) -> tuple[str, Path]:
    """Mirror url, resolve ref to a commit, export that commit's tree; (sha, tree dir)."""
    if not shutil.which("git"):
        raise BadInput("flaskfleet_app.source.git: git is not installed on the controller")
    mirror = build_dir / "git" / hashlib.sha1(url.encode()).hexdigest()  # noqa: S324 - a name
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        run(["git", "clone", "--mirror", "--quiet", url, str(mirror)], "git clone")
    else:
        run(["git", "-C", str(mirror), "fetch", "--quiet", "--prune", "origin"], "git fetch")
    proc = subprocess.run(
        ["git", "-C", str(mirror), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BadInput(f"flaskfleet_app.source.ref: {ref!r} is no branch, tag or commit of {url}")
    sha = proc.stdout.strip()
    export = Path(tempfile.mkdtemp(prefix="flaskfleet-git-"))
    archive = subprocess.run(
        ["git", "-C", str(mirror), "archive", "--format=tar", sha], capture_output=True
    )
    if archive.returncode != 0:
        raise BuildFailed(f"git archive {sha} failed: {archive.stderr.decode()[-2000:]}")
    with tempfile.TemporaryFile() as tmp:
        tmp.write(archive.stdout)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(export, filter="data")
    return sha, export


def detect_kind(src: Path, kind: str, requirements: str) -> str:
    is_project = (src / "pyproject.toml").is_file() or (src / "setup.py").is_file()
    if kind == "project":
        if not is_project:
            raise BadInput(f"flaskfleet_app.kind is project but {src} has no pyproject.toml")
        return "project"
    if kind == "tree" or not is_project:
        if not (src / (requirements or "requirements.txt")).is_file():
            raise BadInput(
                f"flaskfleet_app.source.path: {src} has neither pyproject.toml/setup.py "
                f"nor {requirements or 'requirements.txt'}"
            )
        return "tree"
    return "project"


def project_metadata(src: Path) -> tuple[str, str]:
    try:
        project = tomllib.loads((src / "pyproject.toml").read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        project = {}
    return str(project.get("name", "")), str(project.get("version", ""))


def requirement_lines(path: Path) -> list[str]:
    """The requirements of a file, without hashes, options or comments."""
    lines, pending = [], ""
    for raw in path.read_text().splitlines():
        line = pending + raw.split(" #", 1)[0].strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = re.sub(r"\s--hash[= ]\S+", "", " " + line).strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise BadInput(f"flaskfleet_app.requirements: {path.name}: {exc}") from exc
        lines.append(line)
    return lines


def wheel_names(wheelhouse: Path) -> dict[str, str]:
    """{canonical name: version} of the wheels in a directory."""
    found = {}
    for whl in wheelhouse.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(whl.name)
        found[canonicalize_name(name)] = str(version)
    return found


def add_extras(wheelhouse: Path, extras: list[str]) -> list[str]:
    """Build the extras the app does not pin itself; the ones added (the app's pins win)."""
    added = []
    for extra in extras:
        if canonicalize_name(Requirement(extra).name) not in wheel_names(wheelhouse):
            pip("wheel", "--wheel-dir", str(wheelhouse), extra)
            added.append(extra)
    return added


def static_from(kind: str, root: Path, wheel: Path | None, static_dir: str, dest: Path) -> None:
    """Copy the static folder (relative to the import root) into dest."""
    prefix = static_dir.strip("/") + "/"
    if kind == "tree":
        folder = root / static_dir
        if folder.is_dir():
            shutil.copytree(folder, dest, dirs_exist_ok=True)
    elif wheel is not None:
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    target = dest / member[len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(member))
    if not dest.is_dir() or not any(p.is_file() for p in dest.rglob("*")):
        raise BadInput(f"flaskfleet_app.static.dir: no files under {static_dir} in the release")


def build(spec: dict) -> dict:
    build_dir = Path(spec["build_dir"])
    source = spec.get("source") or {}
    target = spec.get("target") or {}
    host_minor = ".".join(str(target.get("python", "")).split(".")[:2])
    if host_minor != f"{sys.version_info.major}.{sys.version_info.minor}":
        raise BadInput(
            f"app_release_build_python: the controller builds with Python "
            f"{sys.version_info.major}.{sys.version_info.minor} but the hosts run "
            f"{target.get('python')}; use a controller Python of the hosts' minor version"
        )
    settings = {
        k: spec.get(k)
        for k in (
            "kind",
            "distribution",
            "version",
            "requirements",
            "extra_requirements",
            "static_dir",
            "target",
        )
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    cleanup = None
    if source.get("git"):
        sha, src = git_checkout(str(source["git"]), str(source.get("ref") or "HEAD"), build_dir)
        cleanup = src
        digest.update(b"git\0" + sha.encode())
    elif source.get("path"):
        src = Path(source["path"])
        if not src.is_dir():
            raise BadInput(f"flaskfleet_app.source.path: {src} is not a directory")
        hash_tree(src, digest)
    elif source.get("wheelhouse"):
        src = Path(source["wheelhouse"])
        wheels = sorted(src.glob("*.whl"))
        if not wheels:
            raise BadInput(f"flaskfleet_app.source.wheelhouse: {src} holds no .whl file")
        for whl in wheels:
            digest.update(whl.name.encode() + b"\0" + whl.read_bytes())
    else:
        raise BadInput("flaskfleet_app.source: give path, git + ref, or wheelhouse")
    try:
        return build_source(spec, source, src, digest.hexdigest(), build_dir)
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)


def build_source(spec, source, src: Path, content_id: str, build_dir: Path) -> dict:
    requirements = str(spec.get("requirements") or "")
    distribution = str(spec.get("distribution") or "")
    version = str(spec.get("version") or "")
    if source.get("wheelhouse"):
        kind = "wheelhouse"
        if not distribution:
            raise BadInput("flaskfleet_app.distribution is required with a wheelhouse source")
        found = wheel_names(src)
        if canonicalize_name(distribution) not in found:
            raise BadInput(f"flaskfleet_app.distribution: no {distribution} wheel in {src}")
        version = version or found[canonicalize_name(distribution)]
    else:
        kind = detect_kind(src, str(spec.get("kind") or "auto"), requirements)
        if kind == "project":
            name, project_version = project_metadata(src)
            distribution = distribution or name
            version = version or project_version
            if not distribution:
                raise BadInput(
                    f"flaskfleet_app.distribution: {src}/pyproject.toml names no project; set it"
                )
        version = version or "0"
    if kind != "project" and kind != "wheelhouse":
        requirements = requirements or "requirements.txt"
    release = f"{version}-{content_id[:12]}"
    if not RELEASE.match(release):
        raise BadInput(f"flaskfleet_app.version: {version!r} does not make a release name")

    out_dir = build_dir / release
    result = {
        "release": release,
        "version": version,
        "content_id": content_id,
        "kind": kind,
        "distribution": distribution,
        "archive": str(out_dir / "release.tar"),
        "static_archive": str(out_dir / "static.tar") if spec.get("static_dir") else "",
    }
    done = out_dir / "release.json"
    if done.is_file():
        return {**json.loads(done.read_text()), "changed": False}
    if spec.get("check"):
        return {**result, "install": [], "changed": True}

    build_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{release}.", dir=build_dir))
    try:
        wheelhouse = work / "wheelhouse"
        wheelhouse.mkdir()
        req_file = src / requirements if requirements else None
        if req_file is not None and not req_file.is_file():
            raise BadInput(f"flaskfleet_app.requirements: {requirements} is not a file in {src}")
        hashed = req_file is not None and "--hash" in req_file.read_text()
        wd = ["wheel", "--wheel-dir", str(wheelhouse)]
        if kind == "wheelhouse":
            for whl in src.glob("*.whl"):
                shutil.copy2(whl, wheelhouse)
            install = [f"{distribution}=={version}"]
        elif kind == "project":
            if hashed:
                pip(*wd, "--require-hashes", "-r", str(req_file))
                pip(*wd, "--no-deps", str(src))
            elif req_file is not None:
                pip(*wd, "-c", str(req_file), str(src))
            else:
                pip(*wd, str(src))
            app_wheels = [
                w
                for w in wheelhouse.glob("*.whl")
                if canonicalize_name(parse_wheel_filename(w.name)[0])
                == canonicalize_name(distribution)
            ]
            if not app_wheels:
                raise BuildFailed(f"the build made no {distribution} wheel")
            install = [f"{distribution}=={parse_wheel_filename(app_wheels[0].name)[1]}"]
        else:
            pip(*wd, *(["--require-hashes"] if hashed else []), "-r", str(req_file))
            install = requirement_lines(req_file)
            shutil.copytree(
                src,
                work / "app",
                ignore=lambda d, names: [
                    n for n in names if excluded(Path(d).relative_to(src) / n)
                ],
            )
        install += add_extras(wheelhouse, list(spec.get("extra_requirements") or []))
        target = spec["target"]
        for requirement in install:
            complete(
                wheelhouse,
                requirement,
                target["python"],
                target["machine"],
                target.get("glibc", ""),
            )
        (work / "install.txt").write_text("".join(f"{r}\n" for r in install))

        with tarfile.open(work / "release.tar", "w") as tar:
            for member in ("wheelhouse", "install.txt", "app"):
                if (work / member).exists():
                    tar.add(work / member, arcname=member)
        if spec.get("static_dir"):
            app_wheel = None
            if kind != "tree":
                app_wheel = next(
                    w
                    for w in wheelhouse.glob("*.whl")
                    if canonicalize_name(parse_wheel_filename(w.name)[0])
                    == canonicalize_name(distribution)
                )
            root = work / "app" if kind == "tree" else src
            static = work / "static"
            static_from(kind, root, app_wheel, str(spec["static_dir"]), static)
            with tarfile.open(work / "static.tar", "w") as tar:
                for path in sorted(static.rglob("*")):
                    tar.add(path, arcname=str(path.relative_to(static)), recursive=False)
        result["install"] = install
        (work / "release.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        for leftover in ("wheelhouse", "app", "static"):
            shutil.rmtree(work / leftover, ignore_errors=True)
        if out_dir.exists():  # an interrupted earlier build (no release.json): replace it
            shutil.rmtree(out_dir)
        work.rename(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {**result, "changed": True}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", required=True, help="spec JSON file, or - for stdin")
    args = ap.parse_args(argv)
    text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
    try:
        result = build(json.loads(text))
    except BadInput as exc:
        print(f"build_release: {exc}", file=sys.stderr)
        return 2
    except BuildFailed as exc:
        print(f"build_release: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
