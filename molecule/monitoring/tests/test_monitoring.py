"""Monitoring from the inventory: Prometheus scrapes what the topology model lists, behind
basic auth; a stopped exporter fires TargetDown at the webhook receiver and resolves."""

import base64
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from fftest import journal, remote, tcp_probe, wait_for

PROM_URL = "http://127.0.0.1:19090"  # published from ff-monitoring-prom:9090
MONITORING, REDIS = "172.28.9.11", "172.28.9.12"
ALERTS_FILE = "/var/lib/alert-sink/alerts.jsonl"


def _password():
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "monitoring_pw")
    with open(path) as f:
        return f.read().split(" salt=")[0].strip()


def _get(url, auth=True):
    """(status, body) of a GET, with the lab's basic auth unless auth is False."""
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"admin:{_password()}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def query(expr):
    status, body = _get(f"{PROM_URL}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def lab_vars():
    return remote("ff-monitoring-prom").ansible.get_variables()


def _seconds(span):
    return int(re.fullmatch(r"(\d+)s", span).group(1))


EXPECTED_TARGETS = {
    ("prometheus", "ff-monitoring-prom"),
    ("alertmanager", "ff-monitoring-prom"),
    ("node", "ff-monitoring-prom"),
    ("node", "ff-monitoring-redis"),
    ("redis", "ff-monitoring-redis:cache"),
    ("redis", "ff-monitoring-redis:broker"),
}


def _targets_up():
    results = query("up")
    seen = {
        (
            r["metric"]["job"],
            r["metric"]["host"]
            + (":" + r["metric"]["redis_instance"] if "redis_instance" in r["metric"] else ""),
        )
        for r in results
        if r["value"][1] == "1"
    }
    return seen == EXPECTED_TARGETS and len(results) == len(EXPECTED_TARGETS)


def test_every_target_from_the_inventory_is_up():
    prom = remote("ff-monitoring-prom")
    wait_for(
        _targets_up,
        90,
        "every target up == 1",
        interval=2,
        diagnose=lambda: json.dumps(query("up"), indent=1) + journal(prom, "prometheus"),
    )


def test_the_redis_exporter_reads_both_instances_over_tls():
    up = {r["metric"]["redis_instance"]: r["value"][1] for r in query("redis_up")}
    assert up == {"cache": "1", "broker": "1"}
    # maxmemory comes from INFO (the broker's CONFIG is renamed away).
    assert {r["metric"]["redis_instance"] for r in query("redis_memory_max_bytes > 0")} == {
        "cache",
        "broker",
    }


def test_the_celery_queue_length_is_reported():
    redis = remote("ff-monitoring-redis")
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "redis_broker_pw")
    with open(path) as f:
        password = f.read().split(" salt=")[0].strip()
    # The broker's own socket; AUTH on stdin (printf is a shell builtin: no process argv).
    redis.check_output(
        "printf 'AUTH %s\\nDEL celery\\nRPUSH celery a b c\\n' "
        f"'{password}' | redis-cli -s /run/redis-broker/redis-server.sock >/dev/null"
    )
    wait_for(
        lambda: [
            r
            for r in query('redis_key_size{redis_instance="broker",key="celery"}')
            if r["value"][1] == "3"
        ],
        30,
        "redis_key_size of the broker's celery list",
    )


def test_certificate_expiry_is_reported_by_the_node_exporter():
    paths = {
        r["metric"]["path"]: float(r["value"][1])
        for r in query('flaskfleet_tls_certificate_not_after_seconds{host="ff-monitoring-redis"}')
    }
    assert "/etc/redis/tls/redis.crt" in paths
    assert paths["/etc/redis/tls/redis.crt"] > time.time() + 30 * 86400


@pytest.mark.parametrize(
    ("port", "path"), [(9090, "/api/v1/status/config"), (9093, "/api/v2/status")]
)
def test_basic_auth_refuses_without_credentials(port, path):
    prom = remote("ff-monitoring-prom")
    probe = (
        "import urllib.request as u, urllib.error as e\n"
        "try:\n"
        f"    u.urlopen('http://{MONITORING}:{port}{path}', timeout=5); print(200)\n"
        "except e.HTTPError as x:\n"
        "    print(x.code)\n"
    )
    assert prom.check_output(f'python3 -c "{probe}"') == "401"
    assert _get(f"{PROM_URL}/api/v1/status/config", auth=False)[0] == 401
    assert _get(f"{PROM_URL}/api/v1/status/config")[0] == 200


@pytest.mark.parametrize(
    ("host", "address", "port"),
    [
        ("ff-monitoring-prom", MONITORING, 9090),
        ("ff-monitoring-prom", MONITORING, 9093),
        ("ff-monitoring-prom", MONITORING, 9100),
        ("ff-monitoring-redis", REDIS, 9100),
        ("ff-monitoring-redis", REDIS, 9121),
    ],
)
def test_servers_and_exporters_listen_on_the_private_address_only(host, address, port):
    h = remote(host)
    assert h.socket(f"tcp://{address}:{port}").is_listening
    assert not h.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert not h.socket(f"tcp://:::{port}").is_listening


def test_exporters_are_open_to_the_monitoring_host_only():
    assert tcp_probe(remote("ff-monitoring-prom"), REDIS, 9121) == "open"
    assert tcp_probe(remote("ff-monitoring-prom"), REDIS, 9100) == "open"
    # The Redis host is no monitoring host: the firewall drops it at the monitoring host's
    # node exporter and at Prometheus.
    assert tcp_probe(remote("ff-monitoring-redis"), MONITORING, 9100) == "dropped"
    assert tcp_probe(remote("ff-monitoring-redis"), MONITORING, 9090) == "dropped"


def _notifications(prom, skip=0):
    """The receiver's notifications (one JSON document a line), after the first ``skip``."""
    out = prom.run(f"cat {ALERTS_FILE} 2>/dev/null").stdout
    return [json.loads(line) for line in out.splitlines()[skip:] if line.strip()]


def _redis_target_down(prom, status, skip=0):
    for note in _notifications(prom, skip):
        for alert in note["alerts"]:
            labels = alert["labels"]
            if (
                labels.get("alertname") == "TargetDown"
                and labels.get("job") == "redis"
                and alert["status"] == status
            ):
                return alert
    return None


def test_a_stopped_exporter_fires_target_down_and_resolves_after_restart():
    prom, redis = remote("ff-monitoring-prom"), remote("ff-monitoring-redis")
    v = lab_vars()
    wait_for(_targets_up, 60, "every target up before the drill", interval=2)
    # Only what arrives from now on counts (the receiver owns the file: it is only read).
    before = len(prom.run(f"cat {ALERTS_FILE} 2>/dev/null").stdout.splitlines())
    # for: + two scrape intervals, plus one evaluation and Alertmanager's group_wait.
    budget = (
        _seconds(v["monitoring_alert_target_down_for"])
        + 2 * _seconds(v["monitoring_scrape_interval"])
        + _seconds(v["monitoring_evaluation_interval"])
        + _seconds(v["monitoring_alert_group_wait"])
    )
    redis.check_output("systemctl stop prometheus-redis-exporter")
    stopped = time.monotonic()
    try:
        alert = wait_for(
            lambda: _redis_target_down(prom, "firing", before),
            budget + 15,
            "TargetDown firing",
            diagnose=lambda: (
                prom.run(f"cat {ALERTS_FILE}").stdout + journal(prom, "prometheus-alertmanager")
            ),
        )
        fired_after = time.monotonic() - stopped
        print(
            f"TargetDown reached the webhook {fired_after:.1f}s after the stop (budget {budget}s)"
        )
        assert fired_after <= budget + 5, f"fired after {fired_after:.1f}s, budget {budget}s"
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["host"] == "ff-monitoring-redis"
    finally:
        redis.check_output("systemctl start prometheus-redis-exporter")
    wait_for(
        lambda: _redis_target_down(prom, "resolved", before),
        budget + 20,
        "TargetDown resolved",
        diagnose=lambda: prom.run(f"cat {ALERTS_FILE}").stdout,
    )
