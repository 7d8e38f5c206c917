#!/usr/bin/env python3
"""Render roles/monitoring's alert rules with the role's defaults, for promtool.

    python tools/render_rules.py OUT_DIR

Writes OUT_DIR/flaskfleet.rules.yml (the template as the role renders it with
``defaults/main.yml``) and copies the rule unit tests (``roles/monitoring/tests/*.yml``)
beside it, so ``promtool test rules OUT_DIR/*.test.yml`` tests the rules the role
installs, with the documented default thresholds. ``make rules-test`` runs it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "monitoring"
TEMPLATE = ROLE / "templates" / "etc" / "prometheus" / "rules" / "flaskfleet.rules.yml.j2"


def render(variables: dict) -> str:
    """The rules template rendered as Ansible does: its first line sets the delimiters."""
    header, body = TEMPLATE.read_text().split("\n", 1)
    assert header.startswith("#jinja2:"), f"{TEMPLATE}: expected a #jinja2: header line"
    env = jinja2.Environment(
        variable_start_string="[%",
        variable_end_string="%]",
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["comment"] = lambda text: "\n".join(f"# {line}" for line in text.splitlines())
    return env.from_string(body).render({"ansible_managed": "Ansible managed", **variables})


def main(out: str) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    (out_dir / "flaskfleet.rules.yml").write_text(render(defaults))
    for test in sorted((ROLE / "tests").glob("*.yml")):
        shutil.copy(test, out_dir / test.name)


if __name__ == "__main__":
    main(sys.argv[1])
