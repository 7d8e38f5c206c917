"""Role docs agree with the roles: README tables, entry points, defaults vs specs.

Parametrized per role (and per tasks_from use), so a role whose specs lag behind its
callers fails on its own without hiding the others.
"""

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import role_docs  # noqa: E402 - tools/ is not a package

ROLES = role_docs.roles()
CALLER_DIRS = ("playbooks", "molecule", "benchmarks")


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def tasks_from_uses() -> list[tuple[str, str, str]]:
    """(role, entry point, file) for every include_role/import_role with tasks_from."""
    uses = set()
    for top in CALLER_DIRS:
        for path in sorted((ROOT / top).rglob("*.yml")):
            data = yaml.safe_load(path.read_text())
            for node in _walk(data):
                tasks_from = node.get("tasks_from")
                role = node.get("name")
                if not isinstance(tasks_from, str) or not isinstance(role, str):
                    continue
                if "{{" in tasks_from or "{{" in role:
                    continue
                entry = tasks_from.removesuffix(".yml").removesuffix(".yaml")
                uses.add((role, entry, str(path.relative_to(ROOT))))
    return sorted(uses)


def _entry_points() -> list[tuple[str, str, list[str]]]:
    by_pair: dict[tuple[str, str], list[str]] = {}
    for role, entry, where in tasks_from_uses():
        by_pair.setdefault((role, entry), []).append(where)
    return [(role, entry, files) for (role, entry), files in sorted(by_pair.items())]


ENTRY_POINTS = _entry_points()


def _is_template(value) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_is_template(k) or _is_template(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_is_template(v) for v in value)
    return False


def test_tasks_from_uses_are_found():
    # A guard for the collector itself: the rolling deploy uses several entry points.
    assert len(ENTRY_POINTS) >= 5


@pytest.mark.parametrize("role", ROLES)
def test_role_has_a_readme(role):
    path = role_docs.readme_path(role)
    assert path.is_file(), f"roles/{role}/README.md is missing"
    text = path.read_text()
    assert role_docs.BEGIN in text and role_docs.END in text, (
        f"roles/{role}/README.md needs the markers {role_docs.BEGIN} / {role_docs.END}"
    )


@pytest.mark.parametrize("role", ROLES)
def test_readme_variables_table_matches_specs(role):
    problem = role_docs.check_role(role)
    assert problem is None, f"{problem}; run: python tools/role_docs.py {role}"


@pytest.mark.parametrize(
    ("role", "entry", "files"),
    ENTRY_POINTS,
    ids=[f"{role}-{entry}" for role, entry, _ in ENTRY_POINTS],
)
def test_tasks_from_names_a_declared_entry_point(role, entry, files):
    assert (ROOT / "roles" / role).is_dir(), f"{', '.join(files)}: no role {role}"
    assert (ROOT / "roles" / role / "tasks" / f"{entry}.yml").is_file(), (
        f"{', '.join(files)}: tasks_from {entry}.yml, but roles/{role}/tasks/{entry}.yml is missing"
    )
    specs = role_docs.load_specs(role)
    assert entry in specs, (
        f"{', '.join(files)} use(s) tasks_from {entry}.yml of role {role}, but "
        f"roles/{role}/meta/argument_specs.yml declares no entry point {entry!r} "
        f"(it has {', '.join(specs)}): add it with the options {entry}.yml reads"
    )


@pytest.mark.parametrize("role", ROLES)
def test_defaults_are_in_the_main_spec_and_agree(role):
    defaults_file = ROOT / "roles" / role / "defaults" / "main.yml"
    if not defaults_file.is_file():
        pytest.skip(f"{role} has no defaults/main.yml")
    defaults = yaml.safe_load(defaults_file.read_text()) or {}
    options = (role_docs.load_specs(role).get("main") or {}).get("options") or {}
    missing = sorted(set(defaults) - set(options))
    assert not missing, f"roles/{role}: defaults not in the main argument spec: {missing}"
    disagree = [
        f"{name}: defaults/main.yml {value!r} vs spec {options[name].get('default')!r}"
        for name, value in defaults.items()
        if not _is_template(value) and options[name].get("default") != value
    ]
    assert not disagree, f"roles/{role}: defaults disagree with the spec: " + "; ".join(disagree)
