"""What the application and the operators rely on from the PostgreSQL tier.

The tests run twice: after converge (primary ff-postgresql-p, replicas r1 and r2) and
after side_effect.yml (r1 promoted, r2 re-synced from it, p fenced). side_effect.yml
records the topology it leaves in the ephemeral directory; without it the topology is
the inventory's.
"""

import functools
import json
import os
import uuid

import pytest
import testinfra
from fftest import exposure, main_process_status, remote, wait_for

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
TOPOLOGY_FILE = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "postgres_topology.json")
HOSTS = ["ff-postgresql-p", "ff-postgresql-r1", "ff-postgresql-r2"]
# The host that acts as an application client (postgresql_app_extra_client_addresses).
APP_CLIENT = "ff-postgresql-r2"
SERVICE = "postgresql@15-main"

if os.path.exists(TOPOLOGY_FILE):
    with open(TOPOLOGY_FILE, encoding="utf-8") as fh:
        TOPOLOGY = json.load(fh)
else:
    TOPOLOGY = {
        "primary": "ff-postgresql-p",
        "replicas": ["ff-postgresql-r1", "ff-postgresql-r2"],
        "fenced": [],
    }
PRIMARY = TOPOLOGY["primary"]
REPLICAS = TOPOLOGY["replicas"]
FENCED = TOPOLOGY["fenced"]
RUNNING = [PRIMARY, *REPLICAS]

PSQL = "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1"


def _host(name):
    # Commands go through `docker exec` (the platforms are containers named after the
    # hosts): an order of magnitude faster than one ansible run per command.
    return testinfra.get_host(f"docker://{name}")


def _vars(name):
    return remote(name).ansible.get_variables()


@functools.cache
def _secret(name, var):
    """A variable templated by Ansible (the passwords come from a lookup)."""
    return remote(name).ansible("ansible.builtin.debug", f"var={var}", check=False)[var]


def _sql(name, query, db="postgres"):
    """Run a query as the postgres superuser over the local socket; return stripped stdout."""
    out = _host(name).run(f"{PSQL} -d %s -c %s", db, query)
    assert out.rc == 0, f"{name}: {query}: {out.stderr}\n" + _journal(name)
    return out.stdout.strip()


def _journal(name):
    return _host(name).run(f"journalctl -u {SERVICE} --no-pager -n 30").stdout


def _app_login(client, target_address, password, query="SELECT current_user"):
    """Log in as the application role from `client` to `target_address` over TCP."""
    v = _vars(PRIMARY)
    env = f"PGPASSWORD={password} " if password is not None else "PGPASSFILE=/dev/null "
    return _host(client).run(
        env + "psql -XAtw -h %s -p %s -U %s -d %s -c %s",
        target_address,
        str(v.get("postgresql_port", 5432)),
        v["flaskfleet_db_user"],
        v["flaskfleet_db_name"],
        query,
    )


def test_topology_is_the_expected_one():
    assert _sql(PRIMARY, "SELECT pg_is_in_recovery()") == "f"
    for name in REPLICAS:
        assert _sql(name, "SELECT pg_is_in_recovery()") == "t", name


@pytest.mark.parametrize("replica", REPLICAS)
def test_row_written_on_primary_is_read_on_replica(replica):
    db = _vars(PRIMARY)["flaskfleet_db_name"]
    token = uuid.uuid4().hex
    _sql(PRIMARY, "CREATE TABLE IF NOT EXISTS replication_probe (token text PRIMARY KEY)", db)
    _sql(PRIMARY, f"INSERT INTO replication_probe VALUES ('{token}')", db)
    query = f"SELECT count(*) FROM replication_probe WHERE token = '{token}'"
    wait_for(
        lambda: _sql(replica, query, db) == "1",
        15,
        f"row {token} to be replicated to {replica}",
        diagnose=lambda: _journal(replica),
    )


@pytest.mark.parametrize("replica", REPLICAS)
def test_replica_streams_through_its_slot(replica):
    rows = _sql(
        PRIMARY,
        "SELECT s.slot_name || ' ' || r.state || ' ' || host(r.client_addr) "
        "FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid",
    ).splitlines()
    slot = replica.replace("-", "_")
    assert f"{slot} streaming {_vars(replica)['private_ip']}" in rows, rows


@pytest.mark.parametrize("replica", REPLICAS)
def test_replica_refuses_writes(replica):
    db = _vars(replica)["flaskfleet_db_name"]
    out = _host(replica).run(f"{PSQL} -d %s -c %s", db, "CREATE TABLE must_fail (id int)")
    assert out.rc != 0
    assert "read-only transaction" in out.stderr


def test_app_logs_in_from_an_allowed_address():
    v = _vars(PRIMARY)
    out = _app_login(APP_CLIENT, v["private_ip"], _secret(PRIMARY, "flaskfleet_db_password"))
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == v["flaskfleet_db_user"]


def test_app_owns_its_database_and_can_write():
    v = _vars(PRIMARY)
    out = _app_login(
        APP_CLIENT,
        v["private_ip"],
        _secret(PRIMARY, "flaskfleet_db_password"),
        "CREATE TABLE IF NOT EXISTS app_probe (id int); INSERT INTO app_probe VALUES (1); "
        "SELECT 'ok'",
    )
    assert out.rc == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def _tls_login(sslmode, rootcert="/etc/flaskfleet/ca.crt"):
    """The application's login from APP_CLIENT with libpq's TLS settings as given."""
    v = _vars(PRIMARY)
    return _host(APP_CLIENT).run(
        f"PGSSLMODE={sslmode} PGSSLROOTCERT={rootcert} PGPASSWORD=%s "
        "psql -XAtw -h %s -p %s -U %s -d %s -c %s",
        _secret(PRIMARY, "flaskfleet_db_password"),
        v["private_ip"],
        str(v.get("postgresql_port", 5432)),
        v["flaskfleet_db_user"],
        v["flaskfleet_db_name"],
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )


def test_the_app_login_verifies_the_server_against_the_private_ca():
    # What the app's URL asks for (sslmode=verify-full with the CA at /etc/flaskfleet/ca.crt):
    # the certificate is the CA's and names the address the client connected to.
    out = _tls_login("verify-full")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "t"


def test_a_client_without_tls_is_refused():
    out = _tls_login("disable")
    assert out.rc != 0
    assert "no pg_hba.conf entry" in out.stderr and "no encryption" in out.stderr, out.stderr


def test_a_client_trusting_another_ca_fails_verification():
    out = _tls_login("verify-full", "/etc/ssl/certs/ssl-cert-snakeoil.pem")
    assert out.rc != 0
    assert "certificate verify failed" in out.stderr, out.stderr


def test_replicas_stream_over_tls():
    rows = _sql(
        PRIMARY,
        "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid",
    ).splitlines()
    assert rows == ["t"] * len(REPLICAS), rows


@pytest.mark.parametrize(
    ("case", "expected_error"),
    [
        ("from_a_host_not_allowed", "no pg_hba.conf entry"),
        ("without_password", "no password supplied"),
        ("with_a_wrong_password", "password authentication failed"),
    ],
)
def test_app_login_is_refused(case, expected_error):
    v = _vars(PRIMARY)
    # A cluster member that is neither the primary nor the app client: allowed to
    # replicate, not to log in to the application database.
    outsider = next(h for h in HOSTS if h not in (PRIMARY, APP_CLIENT))
    client, password = {
        "from_a_host_not_allowed": (outsider, _secret(PRIMARY, "flaskfleet_db_password")),
        "without_password": (APP_CLIENT, None),
        "with_a_wrong_password": (APP_CLIENT, "not-the-password"),
    }[case]
    out = _app_login(client, v["private_ip"], password)
    assert out.rc != 0
    assert expected_error in out.stderr, out.stderr


@pytest.mark.parametrize("name", HOSTS)
def test_listens_only_where_configured(name):
    host = _host(name)
    port = str(_vars(name).get("postgresql_port", 5432))
    out = host.run(f"ss -ltnH 'sport = :{port}'")
    assert out.rc == 0, out.stderr
    addresses = {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.stdout.splitlines()}
    if name in FENCED:
        assert addresses == set(), f"fenced {name} listens on {addresses}"
        return
    private_ip = _vars(name)["private_ip"]
    assert private_ip in addresses
    assert "127.0.0.1" in addresses
    assert addresses <= {private_ip, "127.0.0.1", "::1"}, addresses


@pytest.mark.parametrize("name", RUNNING)
def test_settings_in_force(name):
    assert _sql(name, "SHOW password_encryption") == "scram-sha-256"
    assert _sql(name, "SHOW wal_level") == "replica"
    assert _sql(name, "SHOW hot_standby_feedback") == "on"
    assert _sql(name, "SHOW max_slot_wal_keep_size") != "-1"
    # postgresql_memory_mb: 1024 in the scenario: 25% and 75% of it.
    assert _sql(name, "SHOW shared_buffers") == "256MB"
    assert _sql(name, "SHOW effective_cache_size") == "768MB"


@pytest.mark.parametrize("name", REPLICAS)
def test_replication_password_never_shows_in_ps(name):
    password = _secret(name, "flaskfleet_replication_password")
    out = _host(name).run("ps -eo args")
    assert "walreceiver" in out.stdout, _journal(name)
    assert password not in out.stdout
    conninfo = _sql(name, "SELECT conninfo FROM pg_stat_wal_receiver")
    assert password not in conninfo


NO_FENCE = [pytest.param(None, marks=pytest.mark.skip(reason="no failover yet"))]


@pytest.mark.parametrize("name", FENCED or NO_FENCE)
def test_fenced_former_primary_stays_down(name):
    host = _host(name)
    assert not host.service(SERVICE).is_running
    assert not host.service(SERVICE).is_enabled
    # pg_ctlcluster refuses to start a cluster whose start.conf says "disabled".
    attempt = host.run("pg_ctlcluster 15 main start")
    assert attempt.rc != 0
    assert not host.service(SERVICE).is_running
    assert host.file("/var/lib/postgresql/15/main/FLASKFLEET_FENCED").exists


@pytest.mark.parametrize("name", RUNNING)
def test_server_runs_sandboxed_as_postgres(name):
    # Debian's unit rates 9.6 ("UNSAFE"); the role's drop-in must bring it to 5.0 or less,
    # and the running postmaster must be the sandboxed one: no capability at all, seccomp on.
    host = _host(name)
    assert exposure(host, f"{SERVICE}.service") <= 5.0
    status = main_process_status(host, SERVICE)
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    assert int(status["CapBnd"], 16) == 0
    assert status["Uid"].split()[0] == host.run("id -u postgres").stdout.strip()


# --- Backups (pgBackRest repository on ff-postgresql-b) -----------------------------

BACKUP = "ff-postgresql-b"
PGBACKREST = "runuser -u pgbackrest -- pgbackrest --stanza=flaskfleet"


def test_the_primary_archives_its_wal_into_the_repository():
    # A segment switched on the primary reaches the repository (pgBackRest's own check).
    assert _sql(PRIMARY, "SHOW archive_mode") == "on"
    out = _host(BACKUP).run(f"{PGBACKREST} check")
    assert out.rc == 0, out.stderr
    info = json.loads(_host(BACKUP).check_output(f"{PGBACKREST} --output=json info"))[0]
    assert info["status"]["code"] == 0, info["status"]
    assert info["cipher"] == "aes-256-cbc"
    assert [b for b in info["backup"] if b["type"] == "full"], info["backup"]


def test_the_repository_is_encrypted():
    # pgBackRest writes encrypted files in OpenSSL's format: "Salted__" first, never the
    # compressor's magic number.
    pg_version = _host(BACKUP).check_output(
        "find /var/lib/pgbackrest/backup -path '*/pg_data/PG_VERSION*' -print -quit"
    )
    assert pg_version, "no backed-up PG_VERSION in the repository"
    head = _host(BACKUP).check_output(f"head -c 8 {pg_version}")
    assert head == "Salted__", head


def test_backups_are_scheduled():
    host = _host(BACKUP)
    for timer in ("flaskfleet-backup-full.timer", "flaskfleet-backup-diff.timer"):
        assert host.service(timer).is_enabled
        assert host.service(timer).is_running
    schedule = host.check_output("systemctl show -P TimersCalendar flaskfleet-backup-diff.timer")
    assert "Mon..Sat" in schedule, schedule


@pytest.mark.parametrize("name", [BACKUP, *RUNNING])
def test_pgbackrest_server_listens_on_the_private_address_only(name):
    private = _vars(name)["private_ip"]
    listening = _host(name).check_output("ss -Hltn 'sport = :8432'")
    assert f"{private}:8432" in listening and "0.0.0.0:8432" not in listening, listening
    assert main_process_status(_host(name), "flaskfleet-pgbackrest")["NoNewPrivs"] == "1"


def test_the_repository_refuses_a_client_certificate_not_from_the_ca():
    # The same request from a database host: answered with its own certificate, refused
    # with a certificate the private CA did not sign (Debian's snakeoil one).
    base = (
        "runuser -u postgres -- pgbackrest --stanza=flaskfleet --log-level-file=off --output=json"
    )
    host = _host("ff-postgresql-r2")
    own = json.loads(host.check_output(f"{base} info"))[0]
    assert own["repo"][0]["status"]["code"] == 0, own
    foreign = json.loads(
        host.check_output(
            "install -o postgres -m 600 /etc/ssl/private/ssl-cert-snakeoil.key /tmp/foreign.key && "
            f"{base} --repo1-host-cert-file=/etc/ssl/certs/ssl-cert-snakeoil.pem "
            "--repo1-host-key-file=/tmp/foreign.key info; rm -f /tmp/foreign.key"
        )
    )[0]
    assert "unknown ca" in foreign["repo"][0]["status"]["message"], foreign


def test_the_resynced_replica_was_seeded_from_the_repository():
    # side_effect.yml wiped ff-postgresql-r2 and re-synced it: with a backup host it is
    # restored from the repository's latest backup and the WAL archive, not pg_basebackup.
    if not FENCED:
        pytest.skip("before the failover drill")
    log = _host("ff-postgresql-r2").run("cat /var/log/pgbackrest/flaskfleet-restore.log")
    assert log.rc == 0, "no pgBackRest restore on ff-postgresql-r2"
    last = log.stdout.strip().splitlines()[-1]
    assert "restore command end: completed successfully" in last, log.stdout[-500:]
