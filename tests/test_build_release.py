"""The release builder (roles/app_release/files/build_release.py): real builds with pip.

Release identity (edited code is a new release, identical code is found built), the app's
own pins winning over flaskfleet's extras, a hash-checked lock, git and wheelhouse
sources, bad input, and a plain source tree built, installed offline and served by
gunicorn on 127.0.0.1.
"""

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILDER = ROOT / "roles" / "app_release" / "files" / "build_release.py"
TARGET = {
    "python": platform.python_version(),
    "machine": platform.machine(),
    "glibc": platform.libc_ver()[1] or "2.36",
}
GUNICORN = "gunicorn==27.0.1"


def spec(source, build_dir, **fields):
    return {
        "source": source,
        "kind": "auto",
        "distribution": "",
        "version": "",
        "requirements": "",
        "extra_requirements": [],
        "static_dir": "",
        "target": TARGET,
        "build_dir": str(build_dir),
        "check": False,
        **fields,
    }


def build(data, expect_rc=0):
    proc = subprocess.run(
        [sys.executable, str(BUILDER), "--spec", "-"],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == expect_rc, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if expect_rc == 0 else proc.stderr


def members(archive):
    with tarfile.open(archive) as tar:
        return tar.getnames()


def read_member(archive, name):
    with tarfile.open(archive) as tar:
        return tar.extractfile(name).read().decode()


@pytest.fixture
def project(tmp_path):
    """A small hatchling project with a static folder, pinning one pure-Python package."""
    src = tmp_path / "proj"
    (src / "tinyapp" / "static").mkdir(parents=True)
    (src / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['hatchling']\nbuild-backend = 'hatchling.build'\n"
        "[project]\nname = 'tinyapp'\nversion = '2.0.0'\ndependencies = ['blinker==1.8.2']\n"
        "[tool.hatch.build.targets.wheel]\npackages = ['tinyapp']\n"
    )
    (src / "tinyapp" / "__init__.py").write_text("GREETING = 'one'\n")
    (src / "tinyapp" / "static" / "site.css").write_text("/* tiny */\n")
    return src


def test_identical_code_is_the_same_release_found_built(project, tmp_path):
    first = build(spec({"path": str(project)}, tmp_path / "b", static_dir="tinyapp/static"))
    assert first["changed"] is True
    assert first["release"] == f"2.0.0-{first['content_id'][:12]}"
    assert first["install"] == ["tinyapp==2.0.0"]
    archive = Path(first["archive"])
    mtime = archive.stat().st_mtime_ns
    again = build(spec({"path": str(project)}, tmp_path / "b", static_dir="tinyapp/static"))
    assert again["changed"] is False
    assert again["release"] == first["release"]
    assert archive.stat().st_mtime_ns == mtime
    assert members(first["static_archive"]) == ["site.css"]


def test_an_edit_under_the_same_version_is_a_new_release_that_ships_it(project, tmp_path):
    first = build(spec({"path": str(project)}, tmp_path / "b"))
    (project / "tinyapp" / "__init__.py").write_text("GREETING = 'two'\n")
    second = build(spec({"path": str(project)}, tmp_path / "b"))
    assert second["version"] == first["version"] == "2.0.0"
    assert second["release"] != first["release"]
    wheel = next(n for n in members(second["archive"]) if n.startswith("wheelhouse/tinyapp"))
    with tarfile.open(second["archive"]) as tar:
        tar.extract(wheel, tmp_path / "x", filter="data")
    import zipfile

    with zipfile.ZipFile(tmp_path / "x" / wheel) as zf:
        assert zf.read("tinyapp/__init__.py").decode() == "GREETING = 'two'\n"


def test_the_apps_own_pin_wins_over_an_extra(project, tmp_path):
    out = build(spec({"path": str(project)}, tmp_path / "b", extra_requirements=["blinker==1.9.0"]))
    wheels = [n for n in members(out["archive"]) if n.startswith("wheelhouse/blinker")]
    assert wheels == ["wheelhouse/blinker-1.8.2-py3-none-any.whl"]
    assert out["install"] == ["tinyapp==2.0.0"]


def test_a_lock_with_a_wrong_hash_fails_the_build(project, tmp_path):
    (project / "requirements.lock").write_text("blinker==1.8.2 --hash=sha256:" + "0" * 64 + "\n")
    err = build(spec({"path": str(project)}, tmp_path / "b", requirements="requirements.lock"), 1)
    assert "pip wheel failed" in err
    assert "HASH" in err.upper()


def test_a_git_ref_is_built_from_its_commit(project, tmp_path):
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(project), *args], check=True, capture_output=True, text=True, env=env
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    sha = git("rev-parse", "HEAD")
    by_branch = build(spec({"git": str(project), "ref": "main"}, tmp_path / "b"))
    by_sha = build(spec({"git": str(project), "ref": sha}, tmp_path / "b"))
    assert by_sha["release"] == by_branch["release"]
    assert by_sha["changed"] is False
    # Uncommitted edits are not part of a git release.
    (project / "tinyapp" / "__init__.py").write_text("GREETING = 'dirty'\n")
    assert build(spec({"git": str(project), "ref": "main"}, tmp_path / "b"))["changed"] is False
    err = build(spec({"git": str(project), "ref": "no-such-branch"}, tmp_path / "b"), 2)
    assert "flaskfleet_app.source.ref" in err


def test_a_wheelhouse_source_needs_its_distribution(project, tmp_path):
    built = build(spec({"path": str(project)}, tmp_path / "b"))
    wheels = tmp_path / "wheels"
    with tarfile.open(built["archive"]) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    shutil.copytree(tmp_path / "x" / "wheelhouse", wheels)
    err = build(spec({"wheelhouse": str(wheels)}, tmp_path / "c"), 2)
    assert "flaskfleet_app.distribution is required" in err
    out = build(spec({"wheelhouse": str(wheels)}, tmp_path / "c", distribution="tinyapp"))
    assert out["install"] == ["tinyapp==2.0.0"]
    assert out["kind"] == "wheelhouse"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"source": {"path": "/nonexistent/app"}}, "flaskfleet_app.source.path"),
        ({"static_dir": "tinyapp/nothing"}, "flaskfleet_app.static.dir"),
        ({"kind": "tree"}, "requirements.txt"),
        ({"target": {**TARGET, "python": "3.9.2"}}, "app_release_build_python"),
    ],
)
def test_bad_input_exits_2_naming_the_setting(project, tmp_path, fields, needle):
    data = spec({"path": str(project)}, tmp_path / "b")
    data.update(fields)
    assert needle in build(data, 2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_plain_source_tree_is_built_installed_offline_and_served(tmp_path):
    tree = ROOT / "examples" / "plain_tree"
    out = build(
        spec(
            {"path": str(tree)},
            tmp_path / "b",
            extra_requirements=[GUNICORN],
            static_dir="site_app/static",
        )
    )
    assert out["kind"] == "tree"
    assert out["release"].startswith("0-")
    assert out["install"] == ["Flask==3.1.3", GUNICORN]
    assert "app/wsgi.py" in members(out["archive"])
    assert read_member(out["archive"], "install.txt") == "Flask==3.1.3\n" + GUNICORN + "\n"
    assert members(out["static_archive"]) == ["plain.css"]

    release = tmp_path / "release"
    with tarfile.open(out["archive"]) as tar:
        tar.extractall(release, filter="data")
    venv = release / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--no-index",
            "--find-links",
            str(release / "wheelhouse"),
            "-r",
            str(release / "install.txt"),
        ],
        check=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"},
    )
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (venv / "lib" / minor / "site-packages" / "tree.pth").write_text(f"{release / 'app'}\n")
    port = free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "wsgi:app"],
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    assert resp.read().decode() == "plain tree ok\n"
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "gunicorn did not answer in 30 s"
                time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=30)
