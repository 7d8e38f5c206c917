#!/usr/bin/env python3
"""Role variable tables, generated from each role's ``meta/argument_specs.yml``.

Every ``roles/<role>/README.md`` carries, between the markers ``<!-- BEGIN VARIABLES -->``
and ``<!-- END VARIABLES -->``, one table per entry point of the role's argument specs
(name | type | default | description; ``elements``, ``choices``, ``required`` and ``no_log``
folded in; sub-options of a list or dict as ``name[].key`` / ``name.key`` rows).

    python tools/role_docs.py          rewrite the tables
    python tools/role_docs.py --check  exit 1, listing the roles whose table disagrees

``tests/test_role_docs.py`` calls the same functions, so a spec change without the README
change fails ``make unit-test``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLES_DIR = ROOT / "roles"
BEGIN = "<!-- BEGIN VARIABLES -->"
END = "<!-- END VARIABLES -->"
GENERATED_NOTE = (
    "<!-- Generated from meta/argument_specs.yml by tools/role_docs.py: edit the specs, "
    "then run `python tools/role_docs.py`. -->"
)


class RoleDocsError(Exception):
    """A README or a spec file the tool cannot work with; the message names the fix."""


def roles(roles_dir: Path = ROLES_DIR) -> list[str]:
    """Names of the roles: every directory under roles/ with a tasks/ folder."""
    return sorted(p.name for p in roles_dir.iterdir() if (p / "tasks").is_dir())


def load_specs(role: str, roles_dir: Path = ROLES_DIR) -> dict[str, dict]:
    """The role's argument_specs mapping (entry point name -> spec), in file order."""
    path = roles_dir / role / "meta" / "argument_specs.yml"
    if not path.is_file():
        raise RoleDocsError(f"{role}: {path.relative_to(roles_dir.parent)} is missing")
    data = yaml.safe_load(path.read_text()) or {}
    specs = data.get("argument_specs")
    if not isinstance(specs, dict):
        raise RoleDocsError(f"{role}: {path} has no argument_specs mapping")
    return specs


def _code(value: str) -> str:
    """A markdown code span holding value (longer fences if value contains backticks)."""
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _cell(text: str) -> str:
    """Text fit for one table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _prose(text: str) -> str:
    """Markdown prose: angle brackets outside code spans escaped (``<name>`` is no HTML tag)."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(
        part if part.startswith("`") else part.replace("<", "&lt;").replace(">", "&gt;")
        for part in parts
    )


def format_value(value: Any) -> str:
    """A default in a code span: a string as it is (``""`` when empty), else YAML flow text."""
    if isinstance(value, str):
        return _code(" ".join(value.split()) if value.strip() else '""')
    dumped = yaml.safe_dump(
        value, default_flow_style=True, width=float("inf"), allow_unicode=True, sort_keys=False
    ).strip()
    if dumped.endswith("\n..."):
        dumped = dumped[: -len("\n...")]
    elif dumped.endswith("..."):
        dumped = dumped[: -len("...")].strip()
    return _code(" ".join(dumped.split()))


def format_type(option: dict) -> str:
    """Type column: the spec's type (str when absent) with its elements folded in."""
    kind = str(option.get("type", "str"))
    if "elements" in option:
        kind = f"{kind} of {option['elements']}"
    return kind


def format_default(option: dict) -> str:
    if option.get("required"):
        return "*required*"
    if "default" not in option:
        return ""
    return format_value(option["default"])


def format_description(option: dict) -> str:
    description = option.get("description", "")
    if isinstance(description, list):
        description = " ".join(str(line) for line in description)
    parts = [str(description).strip()]
    if "choices" in option:
        parts.append("Choices: " + ", ".join(format_value(c) for c in option["choices"]) + ".")
    if option.get("no_log"):
        parts.append("Secret (`no_log`).")
    return " ".join(p for p in parts if p)


def _rows(options: dict, prefix: str = "") -> Iterator[str]:
    for name, option in options.items():
        option = option or {}
        full = f"{prefix}{name}"
        yield (
            f"| {_cell(_code(full))} | {_cell(format_type(option))} | "
            f"{_cell(format_default(option))} | {_cell(_prose(format_description(option)))} |"
        )
        sub = option.get("options")
        if sub:
            marker = "[]." if option.get("type") == "list" else "."
            yield from _rows(sub, f"{full}{marker}")


def render_table(options: dict) -> str:
    """The markdown table of one entry point's options."""
    if not options:
        return "No options."
    lines = ["| name | type | default | description |", "| --- | --- | --- | --- |"]
    lines.extend(_rows(options))
    return "\n".join(lines)


def render_role(role: str, roles_dir: Path = ROLES_DIR) -> str:
    """Everything between the markers of the role's README, markers excluded."""
    specs = load_specs(role, roles_dir)
    names = ["main", *(n for n in specs if n != "main")] if "main" in specs else list(specs)
    main_options = (specs.get("main") or {}).get("options") or {}
    blocks = [GENERATED_NOTE]
    for name in names:
        spec = specs[name] or {}
        options = spec.get("options") or {}
        block = [f"### Entry point `{name}` (`tasks/{name}.yml`)", ""]
        if spec.get("short_description"):
            block += [_prose(" ".join(str(spec["short_description"]).split())), ""]
        if name != "main" and options and options == main_options:
            block.append("Same options as `main`.")
        else:
            block.append(render_table(options))
        blocks.append("\n".join(block))
    return "\n\n".join(blocks)


def readme_path(role: str, roles_dir: Path = ROLES_DIR) -> Path:
    return roles_dir / role / "README.md"


def _split(text: str, role: str) -> tuple[str, str, str]:
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < 0 or end < start:
        raise RoleDocsError(
            f"{role}: README.md needs a line {BEGIN} and, below it, a line {END} "
            "where the variables table goes"
        )
    return text[: start + len(BEGIN)], text[start + len(BEGIN) : end], text[end:]


def updated_readme(role: str, text: str, roles_dir: Path = ROLES_DIR) -> str:
    """The README text with the table between the markers regenerated from the specs."""
    head, _, tail = _split(text, role)
    return f"{head}\n{render_role(role, roles_dir)}\n{tail}"


def check_role(role: str, roles_dir: Path = ROLES_DIR) -> str | None:
    """None when the role's README table agrees with its specs, else why not."""
    path = readme_path(role, roles_dir)
    if not path.is_file():
        return f"{role}: README.md is missing"
    text = path.read_text()
    try:
        if updated_readme(role, text, roles_dir) != text:
            return f"{role}: README.md variables table disagrees with meta/argument_specs.yml"
    except RoleDocsError as exc:
        return str(exc)
    return None


def write_role(role: str, roles_dir: Path = ROLES_DIR) -> bool:
    """Rewrite the role's table; True when the file changed."""
    path = readme_path(role, roles_dir)
    if not path.is_file():
        raise RoleDocsError(f"{role}: README.md is missing; write one with the markers first")
    text = path.read_text()
    new = updated_readme(role, text, roles_dir)
    if new != text:
        path.write_text(new)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="report disagreeing tables, change nothing"
    )
    parser.add_argument("roles", nargs="*", help="roles to handle (default: every role)")
    args = parser.parse_args(argv)
    names = args.roles or roles()
    problems: list[str] = []
    for role in names:
        if args.check:
            problem = check_role(role)
            if problem:
                problems.append(problem)
            continue
        try:
            if write_role(role):
                print(f"{role}: README.md updated")
        except RoleDocsError as exc:
            problems.append(str(exc))
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.check and problems:
        print("run: python tools/role_docs.py", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
