"""The whole stack, end to end, through the load balancer's published port.

HTTP requests go from the controller to 127.0.0.1:18080 (the load balancer's
port 80, published by molecule.yml; its private listener, 8088, on 18088); host
checks run on the lab containers.
"""

import json
import time

import pytest
import requests
from fftest import hosts_in, remote, tcp_probe, wait_for

LB = "http://127.0.0.1:18080"
PRIVATE = "http://127.0.0.1:18088"


def instances():
    """Every gunicorn instance of every app server, as X-Served-By reports it."""
    result = set()
    for name in hosts_in("appservers"):
        h = remote(name)
        hv = h.ansible.get_variables()
        count = int(hv.get("flaskfleet_gunicorn_instances", 2))
        base = int(hv.get("flaskfleet_gunicorn_base_port", 8001))
        hostname = h.check_output("hostname")
        result |= {f"{hostname}:{base + i}" for i in range(count)}
    return result


def test_every_instance_of_every_app_server_takes_traffic():
    expected = instances()
    assert len(expected) >= 4
    seen = set()
    for _ in range(40 * len(expected)):
        r = requests.get(f"{LB}/healthz", timeout=5)
        assert r.status_code == 200
        seen.add(r.headers["X-Served-By"])
        if seen >= expected:
            break
    assert seen == expected


def test_write_through_lb_then_read_from_replica_with_cache():
    title = f"cluster-{time.time()}"
    created = requests.post(
        f"{LB}/api/articles",
        json={"title": title, "body": "written through the load balancer", "author": "molecule"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    article_id = created.json()["id"]

    # A fresh client (no read-your-writes cookie) reads from a replica once the
    # row has streamed there.
    def read_from_replica():
        r = requests.get(f"{LB}/api/articles/{article_id}", timeout=5)
        return r if r.status_code == 200 and r.headers.get("X-DB") == "replica" else None

    first = wait_for(read_from_replica, 30, "the article to be readable from a replica")
    assert first.json()["title"] == title
    again = requests.get(f"{LB}/api/articles/{article_id}", timeout=5)
    assert again.status_code == 200
    assert again.headers.get("X-Cache") == "HIT"


def test_background_job_runs_to_completion():
    started = requests.post(f"{LB}/api/reports", json={}, timeout=10)
    assert started.status_code == 202, started.text
    report_id = started.json()["id"]

    def done():
        r = requests.get(f"{LB}/api/reports/{report_id}", timeout=5)
        body = r.json()
        return body if body.get("status") in ("success", "failure") else None

    body = wait_for(done, 60, "the report job to finish")
    assert body["status"] == "success", json.dumps(body)


@pytest.mark.parametrize("name", hosts_in("appservers"))
def test_readyz_green_on_every_instance(name):
    h = remote(name)
    hv = h.ansible.get_variables()
    base = int(hv.get("flaskfleet_gunicorn_base_port", 8001))
    for i in range(int(hv.get("flaskfleet_gunicorn_instances", 2))):
        url = f"http://127.0.0.1:{base + i}/readyz"
        out = h.run(f"curl -s -o /dev/stdout -w '%{{http_code}}' {url}")
        assert out.stdout.endswith("200"), out.stdout


def test_lb_answers_tls_with_its_certificate(tmp_path):
    # Verified against the certificate the load balancer generated (the lab's trust anchor).
    cert = tmp_path / "lb.crt"
    cert.write_text(remote("ff-cluster-lb1").check_output("cat /etc/nginx/tls/server.crt") + "\n")
    r = requests.get("https://127.0.0.1:18443/healthz", timeout=5, verify=str(cert))
    assert r.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get("https://127.0.0.1:18443/healthz", timeout=5)  # the system's CAs


@pytest.mark.parametrize("url", [LB, "https://127.0.0.1:18443"])
def test_an_unknown_host_is_closed_without_an_answer(url):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/healthz", headers={"Host": "evil.example"}, timeout=5, verify=False)
    assert requests.get(f"{url}/healthz", timeout=5, verify=False).status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/api/slow?ms=1", "/api/jobs/x"])
def test_private_paths_are_refused_on_the_public_listener_and_served_privately(path):
    public = requests.get(f"{LB}{path}", timeout=5)
    assert public.status_code == 404
    assert "X-Served-By" not in public.headers  # nginx's answer: the app never saw it
    private = requests.get(f"{PRIVATE}{path}", timeout=5)
    assert private.status_code == 200, private.text
    assert "X-Served-By" in private.headers


def test_the_metrics_of_an_instance_come_through_the_private_listener():
    r = requests.get(f"{PRIVATE}/metrics", timeout=5)
    assert r.status_code == 200
    assert "flaskfleet_http_requests_total" in r.text


def test_beat_runs_on_exactly_one_worker():
    running = [
        name for name in hosts_in("workers") if remote(name).service("celery-beat").is_running
    ]
    assert len(running) == 1


# The firewall (roles/firewall) after every operation of side_effect.yml: each tier reaches
# only the services it uses; everything else is dropped. app3 is retired by then.
FIREWALL_PATHS = [
    ("ff-cluster-lb1", "172.28.7.21", 8001, "open"),
    ("ff-cluster-app1", "172.28.7.41", 6379, "open"),
    ("ff-cluster-worker1", "172.28.7.41", 6380, "open"),
    ("ff-cluster-worker1", "172.28.7.52", 5432, "open"),
    ("ff-cluster-lb1", "172.28.7.51", 5432, "dropped"),
    ("ff-cluster-lb1", "172.28.7.52", 5432, "dropped"),
    ("ff-cluster-lb1", "172.28.7.41", 6379, "dropped"),
    ("ff-cluster-lb1", "172.28.7.41", 6380, "dropped"),
    ("ff-cluster-worker1", "172.28.7.21", 8001, "dropped"),
    ("ff-cluster-redis1", "172.28.7.51", 5432, "dropped"),
    ("ff-cluster-redis1", "172.28.7.21", 8001, "dropped"),
    ("ff-cluster-app3", "172.28.7.41", 6379, "dropped"),
    ("ff-cluster-app3", "172.28.7.52", 5432, "dropped"),
]


@pytest.mark.parametrize(("client", "address", "port", "expected"), FIREWALL_PATHS)
def test_each_tier_reaches_only_the_services_it_uses(client, address, port, expected):
    assert tcp_probe(remote(client), address, port) == expected


def test_a_spoofed_forwarded_host_does_not_reach_the_app():
    r = requests.get(
        f"{LB}/api/client",
        headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "6666"},
        timeout=5,
    )
    assert r.status_code == 200
    assert "evil.example" not in r.json()["host"]
    assert "6666" not in r.json()["host"]
