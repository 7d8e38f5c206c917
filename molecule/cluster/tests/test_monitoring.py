"""Monitoring of the whole cluster (playbooks/monitoring.yml, playbooks/central_journal.yml)
after the side effect: Prometheus on ff-cluster-mon1 (published on 127.0.0.1:19091) scrapes
what the operator's final inventory lists (db3 primary after the failovers, app3 retired),
every dashboard panel's query answers, and alerts reach the lab's webhook receiver.

The side effect scaled out with ``--limit ...,monitoring``: db3's exporter targets are here
because of that run, and app3's are gone because the scale-in run took them away.
"""

import base64
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
from fftest import journal, remote, tcp_probe, wait_for

PROM_URL = "http://127.0.0.1:19091"
MON = "ff-cluster-mon1"
MON_ADDRESS = "172.28.7.61"
ALERTS_FILE = "/var/lib/alert-sink/alerts.jsonl"
DASHBOARDS = Path(__file__).resolve().parents[3] / "roles" / "monitoring" / "files" / "dashboards"


def final_inventory():
    """The inventory the side effect ended with (db3 primary, db1/db2 replicas, app3 retired)."""
    path = os.path.join(
        os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "failed-over", "ansible_inventory.yml"
    )
    return testinfra.utils.ansible_runner.AnsibleRunner(path)


def in_group(group):
    return sorted(final_inventory().get_hosts(group))


def _password():
    with open(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "monitoring_pw")) as f:
        return f.read().split(" salt=")[0].strip()


def query(expr):
    """Prometheus' answer to an instant query: (status, result list or error text)."""
    request = urllib.request.Request(
        f"{PROM_URL}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    )
    token = base64.b64encode(f"admin:{_password()}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    return response.status, body["data"]["result"] if body["status"] == "success" else body


def mon_vars():
    return remote(MON).ansible.get_variables()


def _seconds(span):
    return int(re.fullmatch(r"(\d+)s", span).group(1))


def expected_targets():
    """(job, host) of every target the final inventory calls for, with how many of each."""
    in_service = [
        h
        for g in (
            "loadbalancers",
            "appservers",
            "workers",
            "redis",
            "postgres_primary",
            "postgres_replicas",
            "monitoring",
        )
        for h in in_group(g)
    ]
    expected = {("node", h): 1 for h in dict.fromkeys(in_service)}
    expected |= {("nginx", h): 1 for h in in_group("loadbalancers")}
    expected |= {
        ("postgres", h): 1 for h in in_group("postgres_primary") + in_group("postgres_replicas")
    }
    for h in in_group("appservers"):
        expected[("gunicorn", h)] = int(
            remote(h).ansible.get_variables().get("flaskfleet_gunicorn_instances", 2)
        )
    for h in in_group("redis"):
        expected[("redis", h)] = 2  # the cache and the broker instance
    for h in in_group("monitoring"):
        expected[("prometheus", h)] = expected[("alertmanager", h)] = 1
    return expected


def _targets():
    status, result = query("up")
    assert status == 200, result
    seen = {}
    for r in result:
        key = (r["metric"]["job"], r["metric"]["host"])
        seen[key] = seen.get(key, 0) + 1
    down = [r["metric"] for r in result if r["value"][1] != "1"]
    return seen, down


def test_every_target_of_the_final_inventory_is_up_and_no_other():
    expected = expected_targets()
    assert ("postgres", "ff-cluster-db3") in expected  # joined by the scale-out
    assert not [k for k in expected if k[1] == "ff-cluster-app3"]  # retired by the scale-in

    def settled():
        seen, down = _targets()
        return (seen, down) if seen == expected and not down else None

    try:
        wait_for(settled, 90, "every target up", interval=3)
    except AssertionError:
        seen, down = _targets()
        missing = {k: v for k, v in expected.items() if seen.get(k) != v}
        extra = {k: v for k, v in seen.items() if k not in expected}
        pytest.fail(
            f"targets differ from the inventory: missing or miscounted {missing}, "
            f"extra {extra}, down {down}"
        )


@pytest.mark.parametrize("series", ["pg_up", "redis_up", "nginx_up"])
def test_every_exporter_reaches_its_service(series):
    # An exporter that cannot log in still answers its scrape (up == 1) with `*_up 0`, and
    # most of its series missing.
    status, result = query(series)
    assert status == 200, result
    assert result, f"no {series} series"
    down = [r["metric"]["host"] for r in result if r["value"][1] != "1"]
    assert not down, f"{series} is 0 on {down}"


def _panels():
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for p in board["panels"]:
            for t in p["targets"]:
                yield pytest.param(t["expr"], id=f"{path.stem}: {p['title']}")


@pytest.mark.parametrize("expr", list(_panels()))
def test_every_dashboard_panel_query_returns_series(expr):
    # Rates need two scrapes after the last converge's restarts: poll briefly.
    def answered():
        status, result = query(expr)
        assert status == 200, f"{expr}: {result}"
        return result or None

    wait_for(answered, 60, f"a series for {expr}", interval=5)


def _notifications(skip):
    out = remote(MON).run(f"cat {ALERTS_FILE} 2>/dev/null").stdout
    return [json.loads(line) for line in out.splitlines()[skip:] if line.strip()]


def _alert(skip, status, **labels):
    for note in _notifications(skip):
        for alert in note["alerts"]:
            if alert["status"] == status and all(
                alert["labels"].get(k) == v for k, v in labels.items()
            ):
                return alert
    return None


def _budget(v, for_name):
    """The rule's for: plus two scrape intervals, one evaluation and Alertmanager's group_wait."""
    return (
        _seconds(v[for_name])
        + 2 * _seconds(v["monitoring_scrape_interval"])
        + _seconds(v["monitoring_evaluation_interval"])
        + _seconds(v["monitoring_alert_group_wait"])
    )


def _drill(stop, start, budget, what, **labels):
    """Stop something, wait for its alert at the webhook, start it, wait for the resolve."""
    mon = remote(MON)
    before = len(mon.run(f"cat {ALERTS_FILE} 2>/dev/null").stdout.splitlines())
    stop()
    stopped = time.monotonic()
    try:
        # The wait allows for a loaded CI machine; the time it took is printed.
        wait_for(
            lambda: _alert(before, "firing", **labels),
            budget + 60,
            f"{what} firing at the webhook",
            interval=2,
            diagnose=lambda: (
                mon.run(f"tail -n 5 {ALERTS_FILE}").stdout
                + journal(mon, "prometheus-alertmanager", 20)
            ),
        )
        print(
            f"{what}: at the webhook {time.monotonic() - stopped:.1f}s after the stop "
            f"(budget {budget}s)"
        )
    finally:
        start()
    wait_for(
        lambda: _alert(before, "resolved", **labels), budget + 60, f"{what} resolved", interval=2
    )


def test_a_stopped_gunicorn_instance_fires_target_down_and_resolves():
    v = mon_vars()
    app = remote("ff-cluster-app1")
    port = int(app.ansible.get_variables().get("flaskfleet_gunicorn_base_port", 8001)) + 1
    _drill(
        lambda: app.check_output(f"systemctl stop gunicorn@{port}"),
        lambda: app.check_output(f"systemctl start gunicorn@{port}"),
        _budget(v, "monitoring_alert_target_down_for"),
        "TargetDown",
        alertname="TargetDown",
        job="gunicorn",
        host="ff-cluster-app1",
    )


def test_a_stopped_replica_fires_the_replication_alert_and_resolves():
    v = mon_vars()
    replica = in_group("postgres_replicas")[0]
    primary = in_group("postgres_primary")[0]
    db = remote(replica)
    # The primary's slot of the replica goes inactive: the alert is on the primary's series.
    _drill(
        lambda: db.check_output("systemctl stop postgresql@15-main"),
        lambda: db.check_output("systemctl start postgresql@15-main"),
        _budget(v, "monitoring_alert_replica_not_streaming_for"),
        "PostgresSlotInactive",
        alertname="PostgresSlotInactive",
        host=primary,
    )


def test_an_app_server_log_line_is_in_the_central_journal():
    text = f"cluster central journal {uuid.uuid4()}"
    remote("ff-cluster-app1").check_output(f"logger -t fftest '{text}'")
    mon = remote(MON)

    def found():
        out = mon.run("journalctl --directory=/var/log/journal/remote -t fftest --no-pager -o cat")
        return text in out.stdout

    wait_for(found, 60, f"'{text}' on the monitoring host")
    # gunicorn's, celery's, nginx's and PostgreSQL's units, from their hosts, in one place.
    for unit in ("gunicorn@8001", "celery-worker@*", "nginx", "postgresql@15-main"):
        out = mon.run(
            f"journalctl --directory=/var/log/journal/remote -u '{unit}' -n 1 --no-pager -o cat"
        )
        assert out.stdout.strip(), f"no {unit} lines in the central journal"


def test_prometheus_answers_the_monitoring_hosts_only_and_asks_for_a_password():
    request = urllib.request.Request(f"{PROM_URL}/api/v1/query?query=up")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    # An app server is no monitoring host: the firewall drops it at Prometheus and at the
    # other hosts' exporters, which answer the monitoring host.
    assert tcp_probe(remote("ff-cluster-app1"), MON_ADDRESS, 9090) == "dropped"
    assert tcp_probe(remote("ff-cluster-app1"), "172.28.7.51", 9187) == "dropped"
    assert tcp_probe(remote(MON), "172.28.7.51", 9187) == "open"
