"""What clients and operators rely on from the load balancer, with the converged config."""

import json
import re
from pathlib import Path

import pytest
from conftest import (
    CERT,
    HTTP_PORT,
    HTTPS_PORT,
    LB,
    get_host,
    marker,
    received,
    send,
)
from fftest import exposure, main_process_status

testinfra_hosts = [LB]

BASE = f"http://127.0.0.1:{HTTP_PORT}"
SCENARIO = Path(__file__).resolve().parent.parent


def test_requests_reach_every_instance(host, instances):
    results = send(host, f"{BASE}/", count=10 * len(instances))
    assert {status for status, _ in results} == {200}
    assert {served_by for _, served_by in results} == set(instances)


def test_access_log_records_upstream_and_timings(host):
    probe = marker()
    send(host, f"{BASE}/?{probe}")
    line = host.run(f"grep -- '{probe}' /var/log/nginx/access.log").stdout
    assert re.search(
        r"rt=\d+\.\d{3} upstream=172\.28\.5\.\d+:80\d\d upstream_status=200 urt=\d+\.\d{3}", line
    ), line


@pytest.mark.parametrize(
    ("url", "proto"),
    [(BASE, "http"), (f"https://127.0.0.1:{HTTPS_PORT}", "https")],
)
def test_backends_get_the_client_headers_over_keepalive_http11(host, url, proto):
    out = host.run(
        "curl -sSk -H 'Host: app.example.test' -H 'X-Forwarded-For: 203.0.113.9' %s",
        f"{url}/json",
    )
    assert out.rc == 0, out.stderr
    seen = json.loads(out.stdout)
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["host"] == "app.example.test"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == proto
    # Upstream keepalive: HTTP/1.1 and no "Connection: close" towards the backend.
    assert seen["version"] == "HTTP/1.1"
    assert "connection" not in headers


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/json", "application/json"), ("/static/css/app.css", "text/css")],
)
def test_text_responses_are_gzipped(host, path, content_type):
    zipped = host.run("curl -sS -D - -o /dev/null -H 'Accept-Encoding: gzip' %s", BASE + path)
    assert zipped.rc == 0, zipped.stderr
    headers = zipped.stdout.lower()
    assert f"content-type: {content_type}" in headers
    assert "content-encoding: gzip" in headers
    plain = host.run("curl -sS -D - -o /dev/null %s", BASE + path)
    assert "content-encoding" not in plain.stdout.lower()


def test_static_files_come_from_disk_with_cache_headers(host):
    out = host.run("curl -sS -D /dev/stderr %s", f"{BASE}/static/css/app.css")
    assert out.rc == 0
    headers = out.stderr.lower()
    assert headers.startswith("http/1.1 200")
    assert out.stdout == (SCENARIO / "files/static/css/app.css").read_text()
    assert "cache-control: max-age=604800" in headers
    assert "expires:" in headers
    # nginx answered itself: no backend saw it.
    assert "x-served-by" not in headers
    missing = send(host, f"{BASE}/static/nope.css")
    assert missing == [(404, "")]


@pytest.mark.parametrize(
    "url",
    [f"{BASE}/", f"{BASE}/static/css/app.css", f"https://127.0.0.1:{HTTPS_PORT}/", f"{BASE}/?x=1"],
)
def test_security_headers(host, url):
    out = host.run("curl -sSk -D - -o /dev/null %s", url)
    headers = out.stdout.lower()
    assert "x-content-type-options: nosniff" in headers
    assert "x-frame-options: sameorigin" in headers
    assert "referrer-policy: strict-origin-when-cross-origin" in headers


@pytest.mark.parametrize(
    ("url", "curl"),
    [(BASE, "curl -sS"), (f"https://127.0.0.1:{HTTPS_PORT}", "curl -sSk")],
)
def test_an_unknown_host_is_closed_without_an_answer(host, url, curl):
    out = host.run(f"{curl} -o /dev/null -H 'Host: evil.example' {url}/json")
    # nginx's 444: "Empty reply from server" (52); over HTTP/2 the stream is reset (92).
    assert out.rc in (52, 92), out.stderr
    # The names in nginx_server_names are answered.
    assert host.run(f"{curl} -o /dev/null -H 'Host: app.example.test' {url}/json").rc == 0


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/api/slow?ms=1", "/api/jobs"])
def test_private_paths_are_refused_publicly_and_served_on_the_private_listener(host, path):
    assert send(host, f"{BASE}{path}") == [(404, "")]  # nginx's own 404: no backend saw it
    [(status, served_by)] = send(host, f"http://172.28.5.10:8088{path}")
    assert status == 200
    assert served_by


def test_a_self_signed_certificate_gets_no_redirect_and_no_hsts(host):
    out = host.run("curl -sSk -D - -o /dev/null %s", f"https://127.0.0.1:{HTTPS_PORT}/")
    assert "strict-transport-security" not in out.stdout.lower()
    assert send(host, f"{BASE}/") != [(301, "")]


def test_a_client_that_never_finishes_its_headers_is_dropped(host):
    # Slowloris: half a request, then silence. nginx closes it after
    # nginx_client_header_timeout (10 s here); the 40 s socket timeout only bounds the test.
    script = (
        "import socket,time;s=socket.create_connection(('127.0.0.1',80));"
        "s.sendall(b'GET / HTTP/1.1\\r\\nHost: localhost\\r\\n');s.settimeout(40);t=time.time();"
        "d=s.recv(100);print(repr(d[:12]),round(time.time()-t))"
    )
    out = host.run(f'python3 -c "{script}"')
    assert out.rc == 0, out.stderr  # closed (b'' or a 408) before the socket timed out
    assert out.stdout.startswith(("b''", "b'HTTP/1.1 408")), out.stdout


def test_stub_status_answers_on_loopback_only(host, lb_vars):
    local = host.run("curl -sS http://127.0.0.1:8081/nginx_status")
    assert local.rc == 0
    assert local.stdout.startswith("Active connections:")
    remote = host.run("curl -sS http://%s:8081/nginx_status", lb_vars["private_ip"])
    assert remote.rc == 7, remote.stdout  # connection refused: nothing listens there


def test_oversized_body_is_refused(host):
    out = host.run(
        "head -c 2000000 /dev/zero | curl -sS -o /dev/null -w '%%{http_code}' --data-binary @- %s",
        f"{BASE}/upload",
    )
    assert out.stdout == "413"


def test_rate_limit_answers_429_past_the_burst(host, lb_vars):
    # Loopback is exempt in this scenario; the LB's private address is a normal client.
    results = send(host, f"http://{lb_vars['private_ip']}:{HTTP_PORT}/", count=20)
    statuses = [status for status, _ in results]
    burst = lb_vars["nginx_rate_limit_burst"]
    assert statuses[: burst + 1] == [200] * (burst + 1)
    assert 429 in statuses
    # The exempt client is not limited by the same burst.
    assert {status for status, _ in send(host, f"{BASE}/", count=20)} == {200}


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_serves_the_lab_certificate(host, version):
    out = host.run(
        f"curl -sS --tlsv{version} --tls-max {version} --cacert {CERT} "
        f"--resolve {LB}:{HTTPS_PORT}:127.0.0.1 -o /dev/null -w '%{{http_code}}' "
        f"https://{LB}:{HTTPS_PORT}/"
    )
    assert out.rc == 0, out.stderr  # the chain and the name verify against the lab cert
    assert out.stdout == "200"


def test_tls_1_1_is_refused(host):
    # Lower the client's security level so that it really offers TLS 1.1:
    # the refusal must come from the server.
    out = host.run(
        "curl -sSk --ciphers DEFAULT@SECLEVEL=0 --tlsv1.1 --tls-max 1.1 https://127.0.0.1:%s/",
        str(HTTPS_PORT),
    )
    assert out.rc == 35, out.stdout
    assert "alert protocol version" in out.stderr


def test_a_stopped_instance_is_skipped_without_failed_requests(host, instances):
    stopped = instances[-1]
    name, port = stopped.split(":")
    backend = get_host(name)
    assert backend.run(f"systemctl stop ff-responder@{port}").rc == 0
    try:
        probe = marker()
        results = send(host, f"{BASE}/?{probe}", count=4 * len(instances))
        assert {status for status, _ in results} == {200}
        assert stopped not in {served_by for _, served_by in results}
        # nginx did try the stopped instance, and moved on to the next one.
        log = host.run(f"grep -- '{probe}' /var/log/nginx/access.log").stdout
        address = backend.ansible.get_variables()["private_ip"]
        assert f"upstream={address}:{port}, " in log, log
    finally:
        backend.run(f"systemctl start ff-responder@{port}")


def test_a_failing_instance_gets_a_get_retried_elsewhere(host, instances):
    failing = instances[-2]
    name, port = failing.split(":")
    probe = marker()
    results = send(host, f"{BASE}/?{probe}&fail={failing}", count=2 * len(instances))
    assert {status for status, _ in results} == {200}
    assert failing not in {served_by for _, served_by in results}
    # The failing instance did get some of them (and answered 502): they were retried.
    assert received(get_host(name), port, probe) >= 1


def test_a_post_is_never_sent_to_a_second_instance(host, instances):
    failing = instances[0]
    probe = marker()
    count = 2 * len(instances)
    results = send(host, f"{BASE}/?{probe}&fail={failing}", count=count, method="POST")
    failed = [served_by for status, served_by in results if status == 502]
    succeeded = [served_by for status, served_by in results if status == 200]
    assert len(failed) + len(succeeded) == count
    # The failing instance's 502 reached the client: nginx did not try another one.
    assert failed, results
    assert set(failed) == {failing}
    assert failing not in succeeded
    # Every POST reached exactly one backend.
    total = 0
    for instance in instances:
        name, port = instance.split(":")
        total += received(get_host(name), port, probe)
    assert total == count


def test_nginx_runs_sandboxed_with_only_the_capabilities_it_needs(host):
    # Debian's unit rates 9.6 ("UNSAFE"); the role's drop-in must bring it to 5.0 or less,
    # and the running master (not only the unit file) must be the sandboxed one.
    assert exposure(host, "nginx.service") <= 5.0
    status = main_process_status(host, "nginx.service")
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    # CAP_CHOWN(0) DAC_OVERRIDE(1) KILL(5) SETGID(6) SETUID(7) NET_BIND_SERVICE(10)
    assert int(status["CapBnd"], 16) == sum(1 << bit for bit in (0, 1, 5, 6, 7, 10))
    workers = host.run(
        "ps -o user= --ppid %s", host.run("systemctl show -P MainPID nginx").stdout.strip()
    )
    assert set(workers.stdout.split()) == {"www-data"}, workers.stdout
