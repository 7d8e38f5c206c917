"""The release builder (roles/app_release/files/build_release.py): real builds with pip.

Release identity (edited code is a new release, identical code is found built without
pip), the app's own pins winning over flaskfleet's extras, a lock used as constraints or
hash-checked (also for what only the hosts' Python needs), git and wheelhouse sources,
plain trees, static files, check mode, bad input, wheels fitted to the hosts' platform,
and a plain source tree built, installed offline and served by gunicorn on 127.0.0.1.
Downloads stay small: itsdangerous, blinker, markupsafe (and Flask + gunicorn for the
end-to-end test).
"""

import hashlib
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
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = ROOT / "roles" / "app_release" / "files"
BUILDER = FILES / "build_release.py"
TARGET = {
    "python": platform.python_version(),
    "machine": platform.machine(),
    "glibc": platform.libc_ver()[1] or "2.36",
}
# The hosts' Python when it is older than the controller's (Debian 12's 3.11.2 here).
OLDER = {**TARGET, "python": f"{sys.version_info.major}.{sys.version_info.minor}.0"}
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


def build(data, expect_rc=0, env=None):
    proc = subprocess.run(
        [sys.executable, str(BUILDER), "--spec", "-"],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == expect_rc, proc.stdout + proc.stderr
    if expect_rc != 0:
        assert proc.stdout == ""
        return proc.stderr
    return json.loads(proc.stdout)


def members(archive):
    with tarfile.open(archive) as tar:
        return tar.getnames()


def files_in(archive):
    with tarfile.open(archive) as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


def read_member(archive, name):
    with tarfile.open(archive) as tar:
        return tar.extractfile(name).read().decode()


def wheels(archive):
    return [n.split("/", 1)[1] for n in files_in(archive) if n.startswith("wheelhouse/")]


def dists(archive):
    """The wheelhouse of a release as name==version (tags vary with the build backend)."""
    return sorted("==".join(w.split("-")[:2]).lower() for w in wheels(archive))


def read_in_wheel(archive, wheel_prefix, name):
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith(wheel_prefix))
        with zipfile.ZipFile(tar.extractfile(member)) as zf:
            return zf.read(name).decode()


def write_project(src, dependencies, name="tinyapp", version="2.0.0"):
    (src / name / "static").mkdir(parents=True, exist_ok=True)
    (src / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['hatchling']\nbuild-backend = 'hatchling.build'\n"
        f"[project]\nname = '{name}'\nversion = '{version}'\ndependencies = {dependencies!r}\n"
        f"[tool.hatch.build.targets.wheel]\npackages = ['{name}']\n"
    )
    (src / name / "__init__.py").write_text("GREETING = 'one'\n")
    (src / name / "static" / "site.css").write_text("/* tiny */\n")
    return src


@pytest.fixture
def project(tmp_path):
    """A small hatchling project with a static folder, pinning one pure-Python package."""
    return write_project(tmp_path / "proj", ["blinker==1.8.2"])


@pytest.fixture(scope="session")
def blinker_sha256(tmp_path_factory):
    """The sha256 of blinker 1.8.2's wheel, as a hash-checked lock lists it."""
    dest = tmp_path_factory.mktemp("blinker")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest)]
        + ["--only-binary=:all:", "blinker==1.8.2"],
        check=True,
    )
    return hashlib.sha256(next(dest.glob("*.whl")).read_bytes()).hexdigest()


def test_identical_code_is_the_same_release_found_built(project, tmp_path):
    first = build(spec({"path": str(project)}, tmp_path / "b", static_dir="tinyapp/static"))
    assert first["changed"] is True
    assert first["release"] == f"2.0.0-{first['content_id'][:12]}"
    assert first["install"] == ["tinyapp==2.0.0"]
    assert first["archive"] == str(tmp_path / "b" / first["release"] / "release.tar")
    archive = Path(first["archive"])
    mtime = archive.stat().st_mtime_ns
    stored = json.loads((archive.parent / "release.json").read_text())
    assert stored == {k: v for k, v in first.items() if k != "changed"}
    # pip cannot run with this configuration: the second run must not need it.
    broken = tmp_path / "pip.conf"
    broken.write_text("this is not\n[an ini file\n")
    start = time.monotonic()
    again = build(
        spec({"path": str(project)}, tmp_path / "b", static_dir="tinyapp/static"),
        env={**os.environ, "PIP_CONFIG_FILE": str(broken)},
    )
    assert time.monotonic() - start < 5
    assert again == {**first, "changed": False}
    assert archive.stat().st_mtime_ns == mtime
    assert members(first["static_archive"]) == ["site.css"]
    assert [f for f in files_in(first["archive"]) if not f.startswith("wheelhouse/")] == [
        "install.txt"
    ]
    assert dists(first["archive"]) == ["blinker==1.8.2", "tinyapp==2.0.0"]
    # Only the release directory (and no temporary one) is left in the build directory.
    assert [p.name for p in (tmp_path / "b").iterdir()] == [first["release"]]


def test_files_outside_the_release_do_not_change_it(project, tmp_path):
    first = build(spec({"path": str(project)}, tmp_path / "b"))
    for junk in (
        ".venv/lib/x.py",
        ".git/HEAD",
        "tinyapp/__pycache__/x.cpython-311.pyc",
        "build/lib/tinyapp/old.py",
        "dist/tinyapp-1.0.0.tar.gz",
        "tinyapp.egg-info/PKG-INFO",
        "node_modules/x/index.js",
        ".pytest_cache/v",
    ):
        (project / junk).parent.mkdir(parents=True, exist_ok=True)
        (project / junk).write_text("junk\n")
    again = build(spec({"path": str(project)}, tmp_path / "b"))
    assert again["release"] == first["release"]
    assert again["changed"] is False
    # A build folder inside the package is code, not build output.
    (project / "tinyapp" / "build").mkdir()
    (project / "tinyapp" / "build" / "x.py").write_text("X = 1\n")
    assert build(spec({"path": str(project)}, tmp_path / "b"))["release"] != first["release"]


def test_an_edit_under_the_same_version_is_a_new_release_that_ships_it(project, tmp_path):
    first = build(spec({"path": str(project)}, tmp_path / "b"))
    (project / "tinyapp" / "__init__.py").write_text("GREETING = 'two'\n")
    second = build(spec({"path": str(project)}, tmp_path / "b"))
    assert second["version"] == first["version"] == "2.0.0"
    assert second["release"] != first["release"]
    assert second["changed"] is True
    text = read_in_wheel(second["archive"], "wheelhouse/tinyapp", "tinyapp/__init__.py")
    assert text == "GREETING = 'two'\n"
    # Both releases stay (a rollback needs the previous one).
    assert Path(first["archive"]).is_file()


def test_a_changed_build_setting_is_a_new_release(project, tmp_path):
    first = build(spec({"path": str(project)}, tmp_path / "b"), 0)
    data = spec({"path": str(project)}, tmp_path / "b", check=True)
    assert build(data)["release"] == first["release"]
    for fields in (
        {"version": "2.0.0-hotfix"},
        {"extra_requirements": [GUNICORN]},
        {"target": {**TARGET, "glibc": "2.28"}},
        {"static_dir": "tinyapp/static"},
    ):
        assert build({**data, **fields})["release"] != first["release"], fields
    assert build({**data, "version": "2.0.0-hotfix"})["release"].startswith("2.0.0-hotfix-")


def test_an_extra_the_app_lacks_is_added(project, tmp_path):
    write_project(project, ["itsdangerous==2.2.0"])
    out = build(spec({"path": str(project)}, tmp_path / "b", extra_requirements=["blinker==1.9.0"]))
    assert out["install"] == ["tinyapp==2.0.0", "blinker==1.9.0"]
    assert read_member(out["archive"], "install.txt") == "tinyapp==2.0.0\nblinker==1.9.0\n"
    assert dists(out["archive"]) == ["blinker==1.9.0", "itsdangerous==2.2.0", "tinyapp==2.0.0"]


def test_the_apps_own_pin_wins_over_an_extra(project, tmp_path):
    out = build(spec({"path": str(project)}, tmp_path / "b", extra_requirements=["blinker==1.9.0"]))
    found = [n for n in members(out["archive"]) if n.startswith("wheelhouse/blinker")]
    assert found == ["wheelhouse/blinker-1.8.2-py3-none-any.whl"]
    assert out["install"] == ["tinyapp==2.0.0"]


def test_a_lock_without_hashes_is_used_as_constraints(project, tmp_path):
    write_project(project, ["itsdangerous>=2.0"])
    (project / "requirements.lock").write_text("itsdangerous==2.1.2\n")
    out = build(spec({"path": str(project)}, tmp_path / "b", requirements="requirements.lock"))
    assert "itsdangerous==2.1.2" in dists(out["archive"])


def test_a_lock_with_a_wrong_hash_fails_the_build(project, tmp_path):
    (project / "requirements.lock").write_text("blinker==1.8.2 --hash=sha256:" + "0" * 64 + "\n")
    err = build(spec({"path": str(project)}, tmp_path / "b", requirements="requirements.lock"), 1)
    assert "pip wheel failed" in err
    assert "--require-hashes" in err
    assert "HASH" in err.upper()
    assert [p.name for p in (tmp_path / "b").iterdir()] == []  # no half release left


def test_a_lock_with_the_right_hashes_builds(project, tmp_path, blinker_sha256):
    (project / "requirements.lock").write_text(
        f"# a comment\nblinker==1.8.2 \\\n    --hash=sha256:{blinker_sha256}\n"
    )
    out = build(spec({"path": str(project)}, tmp_path / "b", requirements="requirements.lock"))
    assert dists(out["archive"]) == ["blinker==1.8.2", "tinyapp==2.0.0"]


def test_an_extra_the_lock_pins_is_installed_at_the_locks_version(
    project, tmp_path, blinker_sha256
):
    # The lock holds blinker although the app does not depend on it: the lock's version
    # is what the hosts install for the extra.
    write_project(project, [])
    (project / "requirements.lock").write_text(f"blinker==1.8.2 --hash=sha256:{blinker_sha256}\n")
    data = spec(
        {"path": str(project)},
        tmp_path / "b",
        requirements="requirements.lock",
        extra_requirements=["blinker==1.9.0"],
    )
    planned = build({**data, "check": True})
    out = build(data)
    assert out["install"] == planned["install"] == ["tinyapp==2.0.0", "blinker==1.8.2"]
    assert dists(out["archive"]) == ["blinker==1.8.2", "tinyapp==2.0.0"]


def test_what_only_the_hosts_python_needs_is_added_at_the_locked_version(project, tmp_path):
    # The controller's Python skips this dependency; the hosts' older Python needs it.
    marker = f'python_full_version < "{platform.python_version()}"'
    write_project(project, ["blinker==1.8.2", f"itsdangerous; {marker}"])
    (project / "requirements.lock").write_text("blinker==1.8.2\nitsdangerous==2.1.2\n")
    data = spec(
        {"path": str(project)}, tmp_path / "b", requirements="requirements.lock", target=OLDER
    )
    if OLDER["python"] == TARGET["python"]:
        pytest.skip("the controller runs an x.y.0 Python: no older patch release to target")
    out = build(data)
    assert "itsdangerous==2.1.2" in dists(out["archive"])
    # Built for the controller's own version, the wheelhouse does not have it.
    plain = build({**data, "target": TARGET, "build_dir": str(tmp_path / "c")})
    assert not any(w.startswith("itsdangerous") for w in wheels(plain["archive"]))


def test_a_hash_checked_lock_must_cover_what_the_hosts_python_needs(
    project, tmp_path, blinker_sha256
):
    if OLDER["python"] == TARGET["python"]:
        pytest.skip("the controller runs an x.y.0 Python: no older patch release to target")
    marker = f'python_full_version < "{platform.python_version()}"'
    write_project(project, ["blinker==1.8.2", f"itsdangerous; {marker}"])
    (project / "requirements.lock").write_text(f"blinker==1.8.2 --hash=sha256:{blinker_sha256}\n")
    data = spec(
        {"path": str(project)}, tmp_path / "b", requirements="requirements.lock", target=OLDER
    )
    err = build(data, 2)
    assert err.startswith("flaskfleet_app.requirements: requirements.lock is hash-checked")
    assert "itsdangerous" in err


def test_a_wheel_built_for_the_controller_is_replaced_by_one_for_the_hosts(project, tmp_path):
    if TARGET["machine"] != "x86_64":
        pytest.skip("the test swaps x86_64 wheels for aarch64 ones")
    write_project(project, ["markupsafe==3.0.2"])
    target = {**TARGET, "machine": "aarch64", "glibc": "2.36"}
    out = build(spec({"path": str(project)}, tmp_path / "b", target=target))
    markupsafe = [w for w in wheels(out["archive"]) if w.lower().startswith("markupsafe")]
    assert len(markupsafe) == 1
    assert "aarch64" in markupsafe[0]
    assert "x86_64" not in markupsafe[0]


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
    assert by_branch["changed"] is True
    assert by_branch["kind"] == "project"
    by_sha = build(spec({"git": str(project), "ref": sha}, tmp_path / "b"))
    assert by_sha["release"] == by_branch["release"]
    assert by_sha["changed"] is False
    assert (tmp_path / "b" / "git").is_dir()  # the mirror
    # Uncommitted edits are not part of a git release.
    (project / "tinyapp" / "__init__.py").write_text("GREETING = 'dirty'\n")
    assert build(spec({"git": str(project), "ref": "main"}, tmp_path / "b"))["changed"] is False
    # A new commit on the branch is a new release that ships it; the old sha still builds.
    git("commit", "-q", "-am", "two")
    git("tag", "v2")
    moved = build(spec({"git": str(project), "ref": "main"}, tmp_path / "b"))
    assert moved["release"] != by_branch["release"]
    text = read_in_wheel(moved["archive"], "wheelhouse/tinyapp", "tinyapp/__init__.py")
    assert text == "GREETING = 'dirty'\n"
    assert build(spec({"git": str(project), "ref": "v2"}, tmp_path / "b"))["changed"] is False
    assert build(spec({"git": str(project), "ref": sha}, tmp_path / "b"))["changed"] is False
    err = build(spec({"git": str(project), "ref": "no-such-branch"}, tmp_path / "b"), 2)
    assert "flaskfleet_app.source.ref" in err
    err = build(spec({"git": str(tmp_path / "nothing"), "ref": "main"}, tmp_path / "b"), 2)
    assert err.startswith("flaskfleet_app.source.git: cannot clone")


def test_a_wheelhouse_source_needs_its_distribution(project, tmp_path):
    built = build(spec({"path": str(project)}, tmp_path / "b"))
    wheels_dir = tmp_path / "wheels"
    with tarfile.open(built["archive"]) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    shutil.copytree(tmp_path / "x" / "wheelhouse", wheels_dir)
    err = build(spec({"wheelhouse": str(wheels_dir)}, tmp_path / "c"), 2)
    assert "flaskfleet_app.distribution is required" in err
    err = build(spec({"wheelhouse": str(wheels_dir)}, tmp_path / "c", distribution="other"), 2)
    assert err.startswith("flaskfleet_app.distribution: no other wheel")
    out = build(
        spec(
            {"wheelhouse": str(wheels_dir)},
            tmp_path / "c",
            distribution="tinyapp",
            static_dir="tinyapp/static",
            extra_requirements=["blinker==1.9.0", "itsdangerous==2.2.0"],
        )
    )
    assert out["install"] == ["tinyapp==2.0.0", "itsdangerous==2.2.0"]
    assert out["kind"] == "wheelhouse"
    assert out["version"] == "2.0.0"
    assert members(out["static_archive"]) == ["site.css"]
    assert dists(out["archive"]) == ["blinker==1.8.2", "itsdangerous==2.2.0", "tinyapp==2.0.0"]


def test_a_plain_tree_ships_its_code_and_its_requirements(tmp_path):
    tree = tmp_path / "tree"
    (tree / "site" / "static" / "img").mkdir(parents=True)
    (tree / "site" / "static" / "dist").mkdir()
    (tree / "wsgi.py").write_text("app = None\n")
    (tree / "site" / "__init__.py").write_text("")
    (tree / "site" / "static" / "site.css").write_text("/* css */\n")
    (tree / "site" / "static" / "img" / "x.png").write_bytes(b"\x89PNG")
    (tree / "site" / "static" / "dist" / "app.js").write_text("// built\n")
    # Tool settings only: still a tree.
    (tree / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    (tree / "base.txt").write_text("itsdangerous==2.2.0  # signing\n")
    (tree / "requirements.txt").write_text(
        "# the tree's requirements\n--prefer-binary\n-r base.txt\n"
        'blinker==1.8.2 ; python_version >= "3"\n'
        'blinker==1.7.0 ; python_version < "3"\n'
    )
    for junk in (".venv/bin/python", "site/__pycache__/x.cpython-311.pyc", "build/x"):
        (tree / junk).parent.mkdir(parents=True, exist_ok=True)
        (tree / junk).write_text("junk\n")
    out = build(
        spec(
            {"path": str(tree)},
            tmp_path / "b",
            extra_requirements=["blinker==1.9.0"],
            static_dir="site/static",
        )
    )
    assert out["kind"] == "tree"
    assert out["distribution"] == ""
    assert out["release"].startswith("0-")
    assert out["install"] == ["itsdangerous==2.2.0", "blinker==1.8.2"]
    assert [f for f in files_in(out["archive"]) if f.startswith("app/")] == [
        "app/base.txt",
        "app/pyproject.toml",
        "app/requirements.txt",
        "app/site/__init__.py",
        "app/site/static/dist/app.js",
        "app/site/static/img/x.png",
        "app/site/static/site.css",
        "app/wsgi.py",
    ]
    assert dists(out["archive"]) == ["blinker==1.8.2", "itsdangerous==2.2.0"]
    assert files_in(out["static_archive"]) == ["dist/app.js", "img/x.png", "site.css"]
    with tarfile.open(out["archive"]) as tar:
        assert tar.getmember("app/wsgi.py").mode == 0o644
        assert tar.getmember("app/site").isdir()


def test_check_mode_builds_nothing(project, tmp_path):
    data = spec({"path": str(project)}, tmp_path / "b", extra_requirements=[GUNICORN], check=True)
    planned = build(data)
    assert planned["changed"] is True
    assert planned["install"] == ["tinyapp==2.0.0", GUNICORN]
    assert not Path(planned["archive"]).parent.exists()
    built = build({**data, "check": False, "extra_requirements": []})
    assert built["release"] != planned["release"]
    again = build({**data, "extra_requirements": []})
    assert again == {**built, "changed": False}


def write_tree(path, requirements="itsdangerous==2.2.0\n"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "wsgi.py").write_text("app = None\n")
    (path / "requirements.txt").write_text(requirements)
    return path


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"source": {"path": "/nonexistent/app"}}, "flaskfleet_app.source.path: /nonexistent"),
        ({"source": {}}, "flaskfleet_app.source needs exactly one of"),
        ({"static_dir": "tinyapp/nothing"}, "flaskfleet_app.static.dir"),
        ({"static_dir": "../etc"}, "flaskfleet_app.static.dir"),
        ({"kind": "tree"}, "requirements.txt"),
        ({"kind": "wheel"}, "flaskfleet_app.kind"),
        ({"requirements": "missing.lock"}, "flaskfleet_app.requirements: missing.lock"),
        ({"requirements": "/etc/passwd"}, "flaskfleet_app.requirements"),
        ({"version": "1.0 beta"}, "flaskfleet_app.version"),
        ({"extra_requirements": ["gunicorn==="]}, "extra_requirements"),
        ({"target": {**TARGET, "python": "3.9.2"}}, "app_release_build_python"),
        ({"target": {**TARGET, "glibc": ""}}, "target.glibc"),
        ({"build_dir": ""}, "app_release_build_dir"),
    ],
)
def test_bad_input_exits_2_naming_the_setting(project, tmp_path, fields, needle):
    data = spec({"path": str(project)}, tmp_path / "b")
    data.update(fields)
    err = build(data, 2)
    assert needle in err
    assert len(err.strip().splitlines()) == 1


def test_bad_trees_and_files_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = build(spec({"path": str(empty)}, tmp_path / "b"), 2)
    assert err.strip() == (
        f"flaskfleet_app.source.path: {empty} has neither pyproject.toml/setup.py "
        "nor requirements.txt"
    )
    tree = write_tree(tmp_path / "tree")
    err = build(spec({"path": str(tree)}, tmp_path / "b", static_dir="static"), 2)
    assert err.startswith("flaskfleet_app.static.dir: no files under static/")
    write_tree(tree, "-e ./lib\n")
    assert "flaskfleet_app.requirements" in build(spec({"path": str(tree)}, tmp_path / "b"), 2)
    nameless = tmp_path / "nameless"
    nameless.mkdir()
    (nameless / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    err = build(spec({"path": str(nameless)}, tmp_path / "b"), 2)
    assert err.startswith("flaskfleet_app.distribution")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, str(BUILDER), "--spec", str(spec_file)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "--spec" in proc.stderr


def test_static_files_come_from_the_apps_wheel(project, tmp_path):
    (project / "tinyapp" / "static" / "img").mkdir()
    (project / "tinyapp" / "static" / "img" / "x.png").write_bytes(b"\x89PNG")
    out = build(spec({"path": str(project)}, tmp_path / "b", static_dir="tinyapp/static/"))
    assert out["static_archive"] == str(Path(out["archive"]).parent / "static.tar")
    assert files_in(out["static_archive"]) == ["img/x.png", "site.css"]
    # Missing from the wheel (hatchling ships only the package): exit 2 after the build.
    (project / "assets").mkdir()
    (project / "assets" / "a.css").write_text("")
    err = build(spec({"path": str(project)}, tmp_path / "b", static_dir="assets"), 2)
    assert err.startswith("flaskfleet_app.static.dir: no files under assets/")


def test_complete_wheelhouse_keeps_its_command_line(tmp_path):
    wheelhouse = tmp_path / "wh"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheelhouse)]
        + ["--only-binary=:all:", "blinker==1.8.2"],
        check=True,
    )
    proc = subprocess.run(
        [sys.executable, str(FILES / "complete_wheelhouse.py"), "--wheelhouse", str(wheelhouse)]
        + ["--requirement", "blinker==1.8.2", "--python-full-version", TARGET["python"]]
        + ["--machine", TARGET["machine"], "--glibc", TARGET["glibc"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout) == {"added": []}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def plain_tree(tmp_path):
    """examples/plain_tree, or an equivalent when the example is absent."""
    example = ROOT / "examples" / "plain_tree"
    if (example / "wsgi.py").is_file():
        return example
    tree = tmp_path / "plain_tree"
    (tree / "site_app" / "static").mkdir(parents=True)
    (tree / "requirements.txt").write_text("Flask==3.1.3\n")
    (tree / "site_app" / "__init__.py").write_text("")
    (tree / "site_app" / "static" / "plain.css").write_text("body {}\n")
    (tree / "site_app" / "views.py").write_text(
        "from flask import Blueprint\n\nbp = Blueprint('site', __name__)\n\n\n"
        "@bp.get('/')\ndef index():\n    return 'plain tree ok\\n', 200, "
        "{'Content-Type': 'text/plain; charset=utf-8'}\n"
    )
    (tree / "wsgi.py").write_text(
        "from flask import Flask\nfrom site_app.views import bp\n\n"
        "app = Flask(__name__, static_folder='site_app/static')\napp.register_blueprint(bp)\n"
    )
    return tree


@pytest.mark.slow
def test_a_plain_source_tree_is_built_installed_offline_and_served(plain_tree, tmp_path):
    out = build(
        spec(
            {"path": str(plain_tree)},
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
    # No configuration, no index: only the release's wheelhouse.
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
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
        env={**clean_env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"},
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
