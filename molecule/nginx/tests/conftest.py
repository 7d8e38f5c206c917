"""Helpers shared by the nginx scenario's tests.

The load balancer is tested from inside its container (curl to 127.0.0.1 or to
its private address); the backends are the responders from prepare.yml, which
answer with ``hostname:port`` in the ``X-Served-By`` header.
"""

import os
import uuid

import pytest
from fftest import hosts_in, remote

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
LB = "ff-nginx-lb"
# Role defaults the scenario does not override.
HTTP_PORT = 80
HTTPS_PORT = 443
CERT = "/etc/nginx/tls/server.crt"
SITE_CONF = "/etc/nginx/flaskfleet/site.conf"
STATIC_ROOT = "/var/www/flaskfleet/static/current"  # load_balancers.yml: the release in service


get_host = remote  # the name this scenario's tests use


def marker():
    """A unique query string to find one test's requests in the backends' journals."""
    return f"probe={uuid.uuid4().hex}"


def send(host, url, count=1, method="GET", options=""):
    """Send ``count`` sequential requests from ``host``; return [(status, served_by)]."""
    data = "--data flaskfleet" if method == "POST" else ""
    out = host.run(
        f"for i in $(seq {count}); do curl -sS -o /dev/null -X {method} {data} {options} "
        "-w '%{http_code} %header{x-served-by}\\n' " + f"'{url}'; done"
    )
    assert out.rc == 0, out.stderr
    results = []
    for line in out.stdout.splitlines():
        status, _, served_by = line.partition(" ")
        results.append((int(status), served_by.strip()))
    assert len(results) == count
    return results


def received(backend, port, needle):
    """How many requests containing ``needle`` the responder on ``port`` logged."""
    out = backend.run(f"journalctl -o cat -u ff-responder@{port} | grep -c -- '{needle}'")
    return int(out.stdout.strip() or 0)


def app_instances():
    """hostname:port of every responder in the base upstream, from the inventory."""
    names = []
    for name in hosts_in("appservers"):
        variables = get_host(name).ansible.get_variables()
        base = variables["flaskfleet_gunicorn_base_port"]
        count = variables["flaskfleet_gunicorn_instances"]
        names += [f"{name}:{port}" for port in range(base, base + count)]
    return names


@pytest.fixture(scope="session")
def instances():
    return app_instances()


@pytest.fixture(scope="session")
def lb_vars():
    return get_host(LB).ansible.get_variables()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(autouse=True)
def _nginx_logs_on_failure(request):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        lb = get_host(LB)
        print(lb.run("journalctl -u nginx --no-pager -n 40").stdout)
        print(lb.run("tail -n 30 /var/log/nginx/error.log").stdout)
