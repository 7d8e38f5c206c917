"""The topology model: one function turns the inventory into everything peers need."""

import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "filter_plugins"))

import flaskfleet as ff  # noqa: E402 - the plugin folder is not a package

SETTINGS = {
    "db_name": "app",
    "db_user": "app",
    "db_password": "pw",
    "redis_cache_password": "cpw",
    "redis_broker_password": "bpw",
}


def inventory(**overrides):
    """A ten-host inventory (groups, hostvars), with groups or hostvars replaced."""
    groups = {
        "loadbalancers": ["lb1"],
        "appservers": ["app1", "app2"],
        "workers": ["w1", "w2"],
        "redis": ["r1"],
        "postgres_primary": ["db1"],
        "postgres_replicas": ["db2", "db3"],
    }
    hostvars = {
        "lb1": {"private_ip": "10.0.0.10"},
        "app1": {"private_ip": "10.0.0.21"},
        "app2": {"private_ip": "10.0.0.22"},
        "w1": {"private_ip": "10.0.0.31"},
        "w2": {"private_ip": "10.0.0.32"},
        "r1": {"private_ip": "10.0.0.41"},
        "db1": {"private_ip": "10.0.0.51"},
        "db2": {"private_ip": "10.0.0.52"},
        "db3": {"private_ip": "10.0.0.53"},
    }
    for name, value in overrides.items():
        if name in groups or name in ("retired", "monitoring", "backup"):
            groups[name] = value
        else:
            hostvars[name] = {**hostvars.get(name, {}), **value}
    groups["all"] = list(dict.fromkeys(h for g in list(groups.values()) for h in g))
    for host in groups["all"]:
        hostvars.setdefault(host, {})
    return groups, hostvars


def topology(primary_override="", **overrides):
    groups, hostvars = inventory(**overrides)
    return ff.flaskfleet_topology(groups, hostvars, primary_override, SETTINGS)


def test_the_default_inventory_wires_every_tier():
    t = topology()
    assert t["primary"] == {"host": "db1", "address": "10.0.0.51", "port": 5432, "slot": "db1"}
    assert [r["host"] for r in t["replicas"]] == ["db2", "db3"]
    assert t["replica_slots"] == ["db2", "db3"]
    assert t["fenced"] == []
    assert t["beat_host"] == "w1"
    assert [w["beat"] for w in t["workers"]] == [True, False]
    assert t["redis"] == {
        "host": "r1",
        "address": "10.0.0.41",
        "cache_port": 6379,
        "broker_port": 6380,
    }
    # TLS by default: libpq verifies the server and its address against the private CA,
    # so do the Redis clients (rediss://).
    ca = "sslmode=verify-full&sslrootcert=%2Fetc%2Fflaskfleet%2Fca.crt"
    rediss = "?ssl_cert_reqs=required&ssl_ca_certs=/etc/flaskfleet/ca.crt"
    assert t["tls"] is True and t["ca_file"] == "/etc/flaskfleet/ca.crt"
    assert t["urls"] == {
        "database": "postgresql+psycopg://app:pw@/app?host=10.0.0.51:5432&host=10.0.0.52:5432"
        f"&host=10.0.0.53:5432&target_session_attrs=read-write&connect_timeout=5&{ca}",
        "replicas": [
            f"postgresql+psycopg://app:pw@10.0.0.52:5432/app?connect_timeout=5&{ca}",
            f"postgresql+psycopg://app:pw@10.0.0.53:5432/app?connect_timeout=5&{ca}",
        ],
        "cache": f"rediss://:cpw@10.0.0.41:6379/0{rediss}",
        "broker": f"rediss://:bpw@10.0.0.41:6380/0{rediss}",
        "result_backend": f"rediss://:bpw@10.0.0.41:6380/1{rediss}",
    }
    assert t["allow"]["postgres_clients"] == ["10.0.0.21", "10.0.0.22", "10.0.0.31", "10.0.0.32"]
    assert t["allow"]["redis_clients"] == t["allow"]["postgres_clients"]
    assert t["allow"]["replication_clients"] == ["10.0.0.51", "10.0.0.52", "10.0.0.53"]
    assert t["allow"]["gunicorn_clients"] == ["10.0.0.10"]
    assert t["roles"]["postgresql"] == ["db1", "db2", "db3"]
    assert t["roles"]["app_release"] == ["app1", "app2", "w1", "w2"]
    assert t["addresses"]["app2"] == "10.0.0.22"


def test_tls_off_gives_plain_urls():
    groups, hostvars = inventory()
    t = ff.flaskfleet_topology(groups, hostvars, "", {**SETTINGS, "tls": False})
    assert t["tls"] is False
    assert t["urls"] == {
        "database": "postgresql+psycopg://app:pw@/app?host=10.0.0.51:5432&host=10.0.0.52:5432"
        "&host=10.0.0.53:5432&target_session_attrs=read-write&connect_timeout=5",
        "replicas": [
            "postgresql+psycopg://app:pw@10.0.0.52:5432/app?connect_timeout=5",
            "postgresql+psycopg://app:pw@10.0.0.53:5432/app?connect_timeout=5",
        ],
        "cache": "redis://:cpw@10.0.0.41:6379/0",
        "broker": "redis://:bpw@10.0.0.41:6380/0",
        "result_backend": "redis://:bpw@10.0.0.41:6380/1",
    }


def test_the_ca_path_is_the_pki_roles():
    specs = yaml.safe_load((ROOT / "roles/pki/meta/argument_specs.yml").read_text())
    assert specs["argument_specs"]["ca"]["options"]["pki_ca_path"]["default"] == ff.CA_FILE


def test_upstream_lists_every_instance_of_every_app_server():
    t = topology(app2={"flaskfleet_gunicorn_instances": 3, "flaskfleet_gunicorn_base_port": 9001})
    assert [(s["host"], s["port"]) for s in t["upstream"]] == [
        ("app1", 8001),
        ("app1", 8002),
        ("app2", 9001),
        ("app2", 9002),
        ("app2", 9003),
    ]
    assert [a["ports"] for a in t["appservers"]] == [[8001, 8002], [9001, 9002, 9003]]


def test_drained_and_weighted_servers():
    t = topology(app1={"flaskfleet_drain": True}, app2={"flaskfleet_upstream_weight": 3})
    by_host = {s["host"]: s for s in t["upstream"]}
    assert by_host["app1"]["down"] is True and by_host["app1"]["weight"] == 1
    assert by_host["app2"]["down"] is False and by_host["app2"]["weight"] == 3


def test_replicas_added_and_removed():
    more = topology(postgres_replicas=["db2", "db3", "db4"], db4={"private_ip": "10.0.0.54"})
    assert more["replica_slots"] == ["db2", "db3", "db4"]
    assert "10.0.0.54" in more["allow"]["replication_clients"]
    assert len(more["urls"]["replicas"]) == 3
    none = topology(postgres_replicas=[])
    assert none["replicas"] == [] and none["replica_slots"] == [] and none["urls"]["replicas"] == []
    assert none["allow"]["replication_clients"] == ["10.0.0.51"]


def test_a_promoted_primary():
    t = topology(primary_override="db2")
    assert t["primary"]["host"] == "db2"
    assert [r["host"] for r in t["replicas"]] == ["db3"]
    assert t["replica_slots"] == ["db3"]
    assert t["fenced"] == ["db1"]
    # Its boot guard still asks the others for their timeline over a replication login.
    assert t["allow"]["replication_clients"] == ["10.0.0.52", "10.0.0.53", "10.0.0.51"]
    # The new primary first, the fenced one out of every URL.
    assert write_hosts(t) == ["10.0.0.52:5432", "10.0.0.53:5432"]
    assert [u.split("?")[0] for u in t["urls"]["replicas"]] == [
        "postgresql+psycopg://app:pw@10.0.0.53:5432/app"
    ]
    assert t["postgres_hosts"] == ["db2", "db3"]


def write_hosts(t):
    """The hosts of the write URL, in the order libpq tries them."""
    query = parse_qs(urlsplit(t["urls"]["database"]).query)
    assert query["target_session_attrs"] == ["read-write"]
    return query["host"]


def test_the_write_url_names_every_database_host_primary_first():
    t = topology()
    assert write_hosts(t) == ["10.0.0.51:5432", "10.0.0.52:5432", "10.0.0.53:5432"]
    query = parse_qs(urlsplit(t["urls"]["database"]).query)
    assert query["connect_timeout"] == [str(ff.DB_CONNECT_TIMEOUT)]
    # A primary listed after the replicas in the inventory still comes first.
    t = topology(postgres_primary=["db3"], postgres_replicas=["db1", "db2"])
    assert write_hosts(t) == ["10.0.0.53:5432", "10.0.0.51:5432", "10.0.0.52:5432"]
    # Without replicas, the write URL is the primary alone.
    assert write_hosts(topology(postgres_replicas=[])) == ["10.0.0.51:5432"]


def test_the_url_rendered_before_a_promotion_still_reaches_the_promoted_host():
    # What an app server that was not re-rendered holds: the promoted replica is in its
    # write URL (target_session_attrs picks it once it accepts writes) and in its reads.
    before, after = topology(), topology(primary_override="db3")
    assert after["primary"]["address"] + ":5432" in write_hosts(before)
    assert any("@10.0.0.53:5432/" in u for u in before["urls"]["replicas"])
    assert write_hosts(after)[0] == "10.0.0.53:5432"


def test_read_urls_have_no_session_requirement():
    for url in topology()["urls"]["replicas"]:
        query = parse_qs(urlsplit(url).query)
        assert "target_session_attrs" not in query
        assert query["connect_timeout"] == [str(ff.DB_CONNECT_TIMEOUT)]
        assert query["sslmode"] == ["verify-full"]


def test_multihost_urls_quote_credentials_and_bracket_ipv6():
    url = ff.flaskfleet_postgres_multihost_url(
        [("fd00::5", 5432), ("10.0.0.6", 5433)],
        "app",
        "p@ss/w:rd",
        "db",
        target_session_attrs="any",
    )
    assert url == (
        "postgresql+psycopg://app:p%40ss%2Fw%3Ard@/db?host=[fd00::5]:5432&host=10.0.0.6:5433"
        "&target_session_attrs=any"
    )
    with pytest.raises(ff.AnsibleFilterError, match="at least one host"):
        ff.flaskfleet_postgres_multihost_url([], "app", "pw", "db")


def test_the_old_primary_moved_to_the_replicas_follows_the_new_one():
    # The inventory after a promotion: db2 is the primary, db1 a replica again.
    t = topology(postgres_primary=["db2"], postgres_replicas=["db1", "db3"])
    assert t["fenced"] == []
    assert t["replica_slots"] == ["db1", "db3"]


def test_a_host_in_several_tiers_is_listed_once():
    t = topology(workers=["app1", "w2"])
    assert t["allow"]["postgres_clients"] == ["10.0.0.21", "10.0.0.22", "10.0.0.32"]
    assert t["roles"]["app_release"] == ["app1", "app2", "w2"]
    assert t["beat_host"] == "app1"


def test_the_beat_flag_picks_the_beat_host():
    assert topology(w2={"celery_beat": True})["beat_host"] == "w2"
    assert topology(workers=[])["beat_host"] == ""


def test_a_retired_host_is_out_of_every_wire():
    t = topology(appservers=["app1"], retired=["app2"])
    assert t["retired"] == ["app2"]
    assert [s["host"] for s in t["upstream"]] == ["app1", "app1"]
    assert "10.0.0.22" not in t["allow"]["postgres_clients"]
    assert "app2" not in t["addresses"]


def test_an_address_without_private_ip_comes_from_facts():
    t = topology(
        app2={"private_ip": None, "ansible_facts": {"default_ipv4": {"address": "192.0.2.7"}}}
    )
    assert t["addresses"]["app2"] == "192.0.2.7"
    assert ("192.0.2.7", 8001) in [(s["address"], s["port"]) for s in t["upstream"]]


def test_an_address_that_cannot_be_known_names_the_fix():
    groups, hostvars = inventory()
    hostvars["app2"] = {"ansible_host": "app2.example.org"}
    with pytest.raises(ff.AnsibleFilterError, match="Set private_ip"):
        ff.flaskfleet_topology(groups, hostvars, "", SETTINGS)


# What the app receives when the inventory lacks the tier or its credentials.
NO_URLS = {"database": "", "replicas": [], "cache": "", "broker": "", "result_backend": ""}


def test_urls_are_empty_without_credentials():
    groups, hostvars = inventory()
    t = ff.flaskfleet_topology(groups, hostvars)
    assert t["urls"] == NO_URLS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"postgres_primary": []}, "it needs exactly one"),
        ({"postgres_primary": ["db1", "db4"]}, "it needs exactly one"),
        ({"postgres_replicas": ["db1"]}, "in both postgres_primary and postgres_replicas"),
        ({"appservers": []}, "at least one host in appservers"),
        ({"redis": []}, "Group redis has 0 host(s)"),
        ({"w1": {"celery_beat": True}, "w2": {"celery_beat": True}}, "two beat processes"),
        ({"retired": ["app1"]}, "is in the retired group and still in a service group"),
        ({"app1": {"private_ip": "app-one"}}, "is not an IP address"),
        ({"app1": {"flaskfleet_gunicorn_instances": 0}}, "must be a whole number from 1 to 64"),
        ({"app1": {"flaskfleet_gunicorn_instances": "two"}}, "must be a whole number from 1 to 64"),
        ({"app1": {"flaskfleet_gunicorn_base_port": 80}}, "must be a port from 1024"),
        ({"app1": {"flaskfleet_upstream_weight": 0}}, "flaskfleet_upstream_weight=0"),
        ({"app1": {"flaskfleet_drain": "maybe"}}, "flaskfleet_drain must be true or false"),
        ({"r1": {"flaskfleet_redis_broker_port": 6379}}, "need a port each"),
        ({"backup": ["bk1", "bk2"]}, "it holds at most one"),
        ({"backup": ["db2"]}, "a repository on a database host is lost with that host"),
        ({"backup": ["bk1"], "retired": ["bk1"]}, "is in the retired group and still in a service"),
        ({"app1": {"gunicorn_instances": 3}}, "set flaskfleet_gunicorn_instances instead"),
        ({"app1": {"private_ip": "8.8.8.8"}}, "app1: private_ip=8.8.8.8 is a public address"),
        ({"db3": {"private_ip": "fd00::1"}, "db2": {"private_ip": "fd00:0::1"}}, "also the"),
        (
            {"app2": {"private_ip": "10.0.0.21"}},
            "app2: private_ip=10.0.0.21 is also the private_ip",
        ),
        (
            {"app1": {"private_ip": None, "ansible_host": "8.8.4.4"}},
            "app1: private_ip is not set and ansible_host=8.8.4.4 is a public address",
        ),
    ],
)
def test_a_broken_inventory_is_refused_with_the_fix(overrides, message):
    groups, hostvars = inventory(**overrides)
    problems = ff.flaskfleet_topology_problems(groups, hostvars)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize(
    "overrides",
    [
        {"app1": {"flaskfleet_gunicorn_instances": 0}},
        {"app1": {"flaskfleet_upstream_weight": "heavy"}},
        {"r1": {"flaskfleet_redis_broker_port": 6379}},
        {"w1": {"celery_beat": "maybe"}},
    ],
)
def test_the_model_refuses_values_it_cannot_use(overrides):
    groups, hostvars = inventory(**overrides)
    with pytest.raises(ff.AnsibleFilterError, match="not usable"):
        ff.flaskfleet_topology(groups, hostvars, "", SETTINGS)


def test_a_partial_inventory_gets_the_wiring_of_what_it_holds():
    # A role scenario: a load balancer and app servers only.
    t = topology(postgres_primary=[], postgres_replicas=[], redis=[], workers=[])
    assert t["primary"] is None and t["redis"] is None
    assert t["urls"] == NO_URLS
    assert len(t["upstream"]) == 4


def test_the_backup_host_talks_to_the_database_hosts_in_service():
    assert topology()["backup"] is None
    assert topology()["allow"]["backup_clients"] == []
    t = topology(backup=["bk1"], bk1={"private_ip": "10.0.0.61"})
    assert t["backup"] == {"host": "bk1", "address": "10.0.0.61", "stanza": "flaskfleet"}
    assert t["addresses"]["bk1"] == "10.0.0.61"
    assert t["allow"]["backup_clients"] == ["10.0.0.51", "10.0.0.52", "10.0.0.53"]
    # After a promotion the repository backs up the new primary first.
    p = topology("db2", backup=["bk1"], bk1={"private_ip": "10.0.0.61"})
    assert p["postgres_hosts"][0] == "db2"


def test_the_backup_cipher_pass_is_checked_only_when_asked():
    good = {n: f"{n}-0123456789abcdef" for n in ff.CLUSTER_SECRETS}
    assert ff.flaskfleet_secret_problems(good, "h") == []
    short = {**good, "flaskfleet_backup_cipher_pass": "tooshort-123"}
    problems = ff.flaskfleet_secret_problems(short, "h")
    assert any("flaskfleet_backup_cipher_pass has 12 characters" in p for p in problems)
    missing = {**good, "flaskfleet_backup_cipher_pass": ""}
    problems = ff.flaskfleet_secret_problems(missing, "h")
    assert any("flaskfleet_backup_cipher_pass is not set" in p for p in problems)


def test_a_primary_override_must_name_a_database_host():
    groups, hostvars = inventory()
    assert any(
        "flaskfleet_primary_override=app1" in p
        for p in ff.flaskfleet_topology_problems(groups, hostvars, "app1")
    )


def test_a_good_inventory_has_no_problem():
    groups, hostvars = inventory()
    assert ff.flaskfleet_topology_problems(groups, hostvars) == []


@pytest.mark.parametrize(
    "overrides",
    [
        # Private, shared-address-space (CGNAT) and unique local addresses are all fine.
        {"app1": {"private_ip": "192.168.1.5"}, "app2": {"private_ip": "100.64.0.2"}},
        {"app1": {"private_ip": "fd12:3456::21"}},
        # No private_ip: the gathered address, unknown before the run.
        {"app1": {"private_ip": None, "ansible_host": "app1.example.org"}},
        {"app1": {"private_ip": None, "ansible_host": "10.0.0.21"}},
        # A retired host is in no wire.
        {"appservers": ["app1"], "retired": ["app2"], "app2": {"private_ip": "8.8.8.8"}},
    ],
)
def test_usable_addresses_pass(overrides):
    groups, hostvars = inventory(**overrides)
    assert ff.flaskfleet_topology_problems(groups, hostvars) == []


@pytest.mark.parametrize(
    ("serial", "apps", "refused"),
    [
        (None, 2, False),
        ("1", 1, False),
        ("3", 1, False),  # one app server: nothing to drain to, whatever the size
        ("100%", 1, False),
        ("1", 2, False),
        ("2", 2, True),
        (2, 2, True),
        ("50%", 2, False),
        ("99%", 2, False),  # int(0.99 * 2) = 1, as Ansible rounds
        ("100%", 2, True),
        ("2", 3, False),
        ("66%", 3, False),
        ("100%", 3, True),
        ("4", 3, True),
    ],
)
def test_a_batch_must_leave_an_app_server_serving(serial, apps, refused):
    groups = {"appservers": [f"app{n}" for n in range(1, apps + 1)]}
    problems = ff.flaskfleet_deploy_serial_problems(serial, groups)
    assert bool(problems) is refused, problems
    if refused:
        assert f"at most {apps - 1}" in problems[0]


@pytest.mark.parametrize("serial", ["0", "all", "-1", "50 %", "", "1.5", [1, 2]])
def test_a_batch_size_must_be_a_number_or_a_percentage(serial):
    assert "is not a batch size" in ff.flaskfleet_deploy_serial_problems(serial, {})[0]


@pytest.mark.parametrize(
    ("setting", "role", "variable"),
    [
        ("flaskfleet_gunicorn_instances", "gunicorn", "gunicorn_instances"),
        ("flaskfleet_gunicorn_base_port", "gunicorn", "gunicorn_base_port"),
        ("flaskfleet_redis_cache_port", "redis", "redis_cache_port"),
        ("flaskfleet_redis_broker_port", "redis", "redis_broker_port"),
    ],
)
def test_the_model_and_the_roles_share_one_default(setting, role, variable):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    assert ff.DEFAULTS[setting] == defaults[variable]


@pytest.mark.parametrize(
    ("group", "variable", "role"),
    [
        (group, variable, "nginx" if group == "loadbalancers" else "postgresql")
        for group, settings in ff.ROLE_PORTS.items()
        for variable in settings
    ],
)
def test_the_port_check_knows_the_roles_default_ports(group, variable, role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    assert ff.ROLE_PORTS[group][variable] == defaults[variable]


def test_without_a_monitoring_host_nothing_is_scraped():
    t = topology()
    assert t["scrape"] == {
        "node": [],
        "nginx": [],
        "postgres": [],
        "redis": [],
        "gunicorn": [],
        "exporters": {},
    }
    assert t["roles"]["prometheus_exporters"] == []
    assert t["roles"]["monitoring"] == []


def _targets(t, job):
    return [(x["host"], f"{x['address']}:{x['port']}") for x in t["scrape"][job]]


def test_the_monitoring_host_scrapes_every_tier_from_the_inventory():
    t = topology(monitoring=["m1"], m1={"private_ip": "10.0.0.71"})
    assert [h for h, _ in _targets(t, "node")] == [
        "lb1",
        "app1",
        "app2",
        "w1",
        "w2",
        "r1",
        "db1",
        "db2",
        "db3",
        "m1",
    ]
    assert ("m1", "10.0.0.71:9100") in _targets(t, "node")
    assert _targets(t, "nginx") == [("lb1", "10.0.0.10:9113")]
    assert _targets(t, "postgres") == [
        ("db1", "10.0.0.51:9187"),
        ("db2", "10.0.0.52:9187"),
        ("db3", "10.0.0.53:9187"),
    ]
    # One exporter on the Redis host, one target per instance, over TLS by default.
    assert [(x["instance"], x["target"], x["port"]) for x in t["scrape"]["redis"]] == [
        ("cache", "rediss://10.0.0.41:6379", 9121),
        ("broker", "rediss://10.0.0.41:6380", 9121),
    ]
    # Every gunicorn instance's /metrics on the private address.
    assert _targets(t, "gunicorn") == [
        ("app1", "10.0.0.21:8001"),
        ("app1", "10.0.0.21:8002"),
        ("app2", "10.0.0.22:8001"),
        ("app2", "10.0.0.22:8002"),
    ]
    assert t["scrape"]["exporters"]["r1"] == ["node", "redis"]
    assert t["scrape"]["exporters"]["lb1"] == ["node", "nginx"]
    assert t["scrape"]["exporters"]["db2"] == ["node", "postgres"]
    assert t["scrape"]["exporters"]["app1"] == ["node"]
    assert t["roles"]["monitoring"] == ["m1"]
    assert "m1" in t["roles"]["prometheus_exporters"]


def test_scrape_targets_follow_scale_out_and_scale_in():
    groups, hostvars = inventory(
        monitoring=["m1"],
        m1={"private_ip": "10.0.0.71"},
        app2={"flaskfleet_gunicorn_instances": 3},
    )
    groups["appservers"].append("app3")
    groups["all"].append("app3")
    hostvars["app3"] = {"private_ip": "10.0.0.23"}
    t = ff.flaskfleet_topology(groups, hostvars, "", SETTINGS)
    assert ("app3", "10.0.0.23:8002") in _targets(t, "gunicorn")
    assert ("app2", "10.0.0.22:8003") in _targets(t, "gunicorn")
    assert "app3" in [h for h, _ in _targets(t, "node")]
    groups["appservers"].remove("app3")
    groups["retired"] = ["app3"]
    t = ff.flaskfleet_topology(groups, hostvars, "", SETTINGS)
    assert "app3" not in [h for h, _ in _targets(t, "gunicorn") + _targets(t, "node")]
    assert "app3" not in t["scrape"]["exporters"]
    assert "app3" not in t["roles"]["prometheus_exporters"]


def test_without_tls_the_redis_exporter_connects_in_plain_text():
    groups, hostvars = inventory(monitoring=["m1"], m1={"private_ip": "10.0.0.71"})
    t = ff.flaskfleet_topology(groups, hostvars, "", {**SETTINGS, "tls": False})
    assert t["scrape"]["redis"][1]["target"] == "redis://10.0.0.41:6380"


@pytest.mark.parametrize(("name", "port"), sorted(ff.EXPORTER_PORTS.items()))
def test_the_model_and_the_exporters_role_share_the_exporter_ports(name, port):
    defaults = yaml.safe_load(
        (ROOT / "roles" / "prometheus_exporters" / "defaults" / "main.yml").read_text()
    )
    assert defaults[f"prometheus_exporters_{name}_port"] == port


@pytest.mark.parametrize(("name", "port"), sorted(ff.MONITORING_PORTS.items()))
def test_the_model_and_the_monitoring_role_share_the_server_ports(name, port):
    defaults = yaml.safe_load((ROOT / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
    assert defaults[f"monitoring_{name}_port"] == port
