"""inkpot, an app unlike the sample, deployed from its flaskfleet_app description alone.

HTTP requests go from the controller to 127.0.0.1:18180 (the load balancer's port 80,
published by molecule.yml); host checks run on the lab containers. inkpot has no
/healthz and no version endpoint: which instance served a page comes from the load
balancer's access log, which release an instance runs from its master's directory.
"""

import re
import uuid

import requests
from fftest import hosts_in, remote, wait_for

LB = "http://127.0.0.1:18180"
RELEASE = re.compile(r"^1\.[01]\.0-[0-9a-f]{12}$")


def lb():
    return remote(hosts_in("loadbalancers")[0])


def test_every_instance_of_every_app_server_serves_pages():
    expected = set()
    for name in hosts_in("appservers"):
        address = remote(name).ansible.get_variables()["private_ip"]
        expected |= {f"{address}:8001", f"{address}:8002"}
    marker = f"/?probe={uuid.uuid4().hex}"
    for _ in range(60):
        r = requests.get(f"{LB}{marker}", timeout=10)
        assert r.status_code == 200
        assert "inkpot" in r.text
    log = lb().check_output(f"grep -F 'GET {marker} ' /var/log/nginx/access.log")
    served = set(re.findall(r"upstream=(\S+)", log))
    assert served == expected, log[-2000:]


def test_a_write_lands_on_the_primary_and_reads_back():
    title = f"note {uuid.uuid4().hex[:8]}"
    r = requests.post(
        f"{LB}/notes", json={"title": title, "body": "one two three four"}, timeout=10
    )
    assert r.status_code == 201, r.text
    note_id = r.json()["id"]
    back = requests.get(f"{LB}/notes/{note_id}", timeout=10).json()
    assert back["title"] == title
    data = remote(hosts_in("postgres_primary")[0])
    rows = data.check_output(
        f'sudo -u postgres psql -d inkpot -Atc "SELECT title FROM note WHERE id = {int(note_id)}"'
    )
    assert rows == title


def test_a_celery_worker_runs_the_apps_task():
    r = requests.post(f"{LB}/notes", json={"title": "count", "body": "a b c d e f g"}, timeout=10)
    assert r.status_code == 201, r.text
    note_id = r.json()["id"]

    def counted():
        return requests.get(f"{LB}/notes/{note_id}", timeout=10).json().get("words") == 7

    wait_for(
        counted,
        90,
        "the worker to count the words of the note",
        diagnose=lambda: lb().check_output("journalctl -u 'celery-worker@*' -n 40 --no-pager"),
    )


def test_static_files_are_served_by_nginx_from_the_release():
    r = requests.get(f"{LB}/assets/inkpot.css", timeout=10)
    assert r.status_code == 200
    assert "/* inkpot stylesheet */" in r.text
    # nginx's static location (`expires`: max-age), not Flask (no-cache), from the
    # release's files on the load balancer (the location does not log).
    assert "max-age=" in r.headers.get("Cache-Control", "")
    on_disk = lb().check_output("cat /var/www/inkpot/static/current/inkpot.css")
    assert r.text.strip() == on_disk.strip()
    current = lb().check_output("readlink /var/www/inkpot/static/current")
    assert RELEASE.match(current.rsplit("/", 1)[-1]), current


def test_every_instance_runs_the_current_release():
    for name in hosts_in("appservers"):
        host = remote(name)
        current = host.check_output("readlink -f /opt/inkpot/current")
        assert RELEASE.match(current.rsplit("/", 1)[-1]), current
        for port in (8001, 8002):
            pid = host.check_output(f"systemctl show --property=MainPID --value gunicorn@{port}")
            cwd = host.check_output(f"readlink /proc/{pid}/cwd")
            assert cwd == f"{current}/app", (name, port, cwd)


def test_the_app_gets_its_own_variables_and_no_flaskfleet_ones():
    host = remote(hosts_in("appservers")[0])
    names = host.check_output(
        "sed -n 's/^\\([A-Za-z_0-9]*\\)=.*/\\1/p' /opt/inkpot/current/inkpot.env"
    )
    names = set(names.split())
    assert {
        "INKPOT_SQLALCHEMY_DATABASE_URI",
        "INKPOT_READ_REPLICAS",
        "INKPOT_CELERY__broker_url",
        "INKPOT_CELERY__result_backend",
        "INKPOT_SECRET_KEY",
        "INKPOT_RELEASE",
    } <= names
    assert not [n for n in names if n.startswith("FLASKFLEET_")]
    # extra_env with a wiring value: the same URL as the app's own database variable.
    env = host.check_output("cat /opt/inkpot/current/inkpot.env")
    uri = re.search(r'^INKPOT_SQLALCHEMY_DATABASE_URI="(.*)"$', env, re.M).group(1)
    assert f'INKPOT_AUDIT_DATABASE_URI="{uri}"' in env
    assert "target_session_attrs=read-write" in uri
    # libpq5, the system package the contract asks for.
    assert host.package("libpq5").is_installed
