"""roles/monitoring's alert rules: every alert has a promtool unit test (`make rules-test`
runs them), and the thresholds are role variables with documented defaults."""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import render_rules  # noqa: E402 - tools/ is not a package

ROLE = ROOT / "roles" / "monitoring"


def _rules():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    return yaml.safe_load(render_rules.render(defaults))


def test_every_alert_has_a_unit_test_that_expects_it_to_fire():
    alerts = {r["alert"] for g in _rules()["groups"] for r in g["rules"]}
    tests = yaml.safe_load((ROLE / "tests" / "flaskfleet.rules.test.yml").read_text())
    firing = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - firing == set(), "alerts without a test that fires them"
    assert firing - alerts == set(), "tests of alerts the rules do not have"


def test_every_threshold_is_a_role_variable_with_a_default():
    template = render_rules.TEMPLATE.read_text()
    used = set(re.findall(r"\[%\s*(monitoring_\w+)", template))
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert used and used <= set(defaults)
