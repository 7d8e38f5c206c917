"""Redis cache and broker: TLS only, authenticated, bounded, persistent where a queue needs it.

Every check talks to the instances with redis-cli over TLS, verifying the server against
the private CA, the way the app and its workers do (their redis-py also checks that the
certificate names the address: see the tests that connect like it). Passwords come from
the files molecule's password lookup wrote, not from the rendered configuration.
"""

import os
import pathlib
import re
import uuid

import pytest
from fftest import exposure

testinfra_hosts = ["ff-redis-1"]
INSTANCES = ["cache", "broker"]
# The CA certificate roles/pki put beside Redis' key and certificate.
CA = "/etc/redis/tls/ca.crt"
CERT, KEY = "/etc/redis/tls/redis.crt", "/etc/redis/tls/redis.key"
VALUE = "x" * 1024  # one kilobyte per key in the memory pressure tests


@pytest.fixture(scope="module")
def hostvars(host):
    return host.ansible.get_variables()


def password(name):
    path = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / f"redis_{name}_pw"
    return path.read_text().split()[0]


def port(hostvars, name):
    return int(hostvars[f"flaskfleet_redis_{name}_port"])


def unit(name):
    return f"redis-server@{name}.service"


def journal(host, name):
    return host.run("journalctl -u %s --no-pager -n 60", unit(name)).stdout


def cli(host, hostvars, name, *args, address="127.0.0.1", secret=None, feed=None, cacert=CA):
    """Run redis-cli against an instance; the password goes through the environment.

    secret=None uses the instance's password, "" sends none. feed=(template, count)
    pipes GENERATOR's output into redis-cli (for --pipe). cacert is the CA redis-cli
    verifies the server with; None speaks plain TCP (no TLS).
    """
    secret = password(name) if secret is None else secret
    tls = ["--tls", "--cacert", cacert] if cacert else []
    command = "timeout 120 redis-cli --no-auth-warning" + " %s" * len(tls) + " -h %s -p %s"
    command += " %s" * len(args)
    params = [*tls, address, str(port(hostvars, name)), *args]
    if secret:
        command, params = "env REDISCLI_AUTH=%s " + command, [secret, *params]
    if feed is not None:
        command, params = f"{GENERATOR} | {command}", [*feed, *params]
    return host.run(command, *params)


def info_field(host, hostvars, name, section, field):
    out = cli(host, hostvars, name, "INFO", section).stdout
    match = re.search(rf"^{field}:(\S+)", out, re.MULTILINE)
    assert match, out
    return match.group(1)


# Writes "TEMPLATE.format(i=0..COUNT-1)" lines, one inline Redis command each.
GENERATOR = (
    "python3 -c 'import sys; t, n = sys.argv[1], int(sys.argv[2]); "
    'sys.stdout.writelines(t.format(i=i) + "\\r\\n" for i in range(n))\' %s %s'
)


def pipe(host, hostvars, name, template, count):
    """Stream COUNT commands into an instance; returns redis-cli --pipe's (errors, replies)."""
    out = cli(host, hostvars, name, "--pipe", feed=(template, str(count)))
    match = re.search(r"errors: (\d+), replies: (\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    return int(match.group(1)), int(match.group(2))


def count_existing(host, hostvars, name, prefix, numbers):
    keys = [f"{prefix}:{i}" for i in numbers]
    return int(cli(host, hostvars, name, "EXISTS", *keys).stdout.strip())


@pytest.fixture(params=["loopback", "private"])
def address(request, hostvars):
    return "127.0.0.1" if request.param == "loopback" else hostvars["private_ip"]


@pytest.mark.parametrize("name", INSTANCES)
def test_answers_with_the_password(host, hostvars, name, address):
    out = cli(host, hostvars, name, "PING", address=address)
    assert out.stdout.strip() == "PONG", out.stdout + out.stderr + journal(host, name)


@pytest.mark.parametrize("name", INSTANCES)
def test_refuses_a_client_without_tls(host, hostvars, name, address):
    # The port speaks TLS only: a plain client's command is not a TLS handshake.
    plain = cli(host, hostvars, name, "PING", address=address, cacert=None)
    assert plain.rc != 0, plain.stdout + plain.stderr
    assert "PONG" not in plain.stdout + plain.stderr


@pytest.fixture(scope="module")
def foreign_ca(host):
    """A throwaway CA that did not sign Redis' certificate."""
    directory = host.check_output("mktemp -d")
    host.run_expect(
        [0],
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=foreign-ca -keyout %s/ca.key -out %s/ca.crt",
        directory,
        directory,
    )
    yield f"{directory}/ca.crt"
    host.run("rm -rf %s", directory)


@pytest.mark.parametrize("name", INSTANCES)
def test_a_client_trusting_another_ca_refuses_the_server(host, hostvars, name, address, foreign_ca):
    out = cli(host, hostvars, name, "PING", address=address, cacert=foreign_ca)
    assert "PONG" not in out.stdout, out.stdout
    assert "certificate verify failed" in out.stdout + out.stderr, out.stdout + out.stderr


# What redis-py does with the topology's rediss://...?ssl_cert_reqs=required&ssl_ca_certs=
# URL: verify the chain against the CA file and the address against the certificate's
# names (an IP SAN), then AUTH. Prints the replies and the protocol, or the error's class.
TLS_CLIENT = """
import os, socket, ssl, sys
address, port, server_name, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=cafile)
try:
    with socket.create_connection((address, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(b"AUTH " + os.environ["REDISCLI_AUTH"].encode() + b"\\r\\nPING\\r\\n")
            replies = b""
            while replies.count(b"\\r\\n") < 2:
                chunk = tls.recv(256)
                if not chunk:
                    break
                replies += chunk
            print(replies.decode().split(), tls.version())
except (OSError, ssl.SSLError) as error:
    print(type(error).__name__, error)
    sys.exit(1)
"""


def tls_client(host, name, address, server_name, port_number, cafile=CA):
    return host.run(
        "env REDISCLI_AUTH=%s python3 -c %s %s %s %s %s",
        password(name),
        TLS_CLIENT,
        address,
        str(port_number),
        server_name,
        cafile,
    )


@pytest.mark.parametrize("name", INSTANCES)
def test_a_client_verifying_the_address_like_redis_py_gets_pong(host, hostvars, name, address):
    out = tls_client(host, name, address, address, port(hostvars, name))
    assert out.rc == 0, out.stdout + out.stderr + journal(host, name)
    replies, version = out.stdout.strip().rsplit(" ", 1)
    assert replies == "['+OK', '+PONG']", out.stdout
    assert version in ("TLSv1.2", "TLSv1.3"), out.stdout


@pytest.mark.parametrize("name", INSTANCES)
def test_a_client_expecting_another_address_refuses_the_certificate(host, hostvars, name):
    # The certificate names 127.0.0.1 and the private address, nothing else.
    out = tls_client(host, name, hostvars["private_ip"], "192.0.2.1", port(hostvars, name))
    assert out.rc != 0, out.stdout
    assert "SSLCertVerificationError" in out.stdout and "mismatch" in out.stdout, out.stdout


def test_the_certificate_names_every_bound_address(host, hostvars):
    names = host.check_output("openssl x509 -noout -ext subjectAltName -in %s", CERT)
    private = hostvars["private_ip"]
    for expected in ("IP Address:127.0.0.1", f"IP Address:{private}", f"DNS:{private}"):
        assert expected in names, names


def test_the_private_key_is_readable_by_redis_alone(host):
    key = host.file(KEY)
    assert (key.user, key.mode) == ("redis", 0o600)
    peek = host.run("runuser -u nobody -- cat %s", key.path)
    assert peek.rc != 0 and "Permission denied" in peek.stderr


@pytest.mark.parametrize("name", INSTANCES)
def test_local_tools_use_a_socket_only_root_and_redis_can_open(host, name):
    # The role's own redis-cli (live CONFIG SET) and the restore playbook go through it.
    socket_file = host.file(f"/run/redis-{name}/redis-server.sock")
    assert socket_file.is_socket
    assert (socket_file.user, socket_file.mode) == ("redis", 0o700)
    ping = host.run(
        "env REDISCLI_AUTH=%s redis-cli --no-auth-warning -s %s PING",
        password(name),
        socket_file.path,
    )
    assert ping.stdout.strip() == "PONG", ping.stdout + ping.stderr + journal(host, name)
    other = host.run("runuser -u nobody -- redis-cli -s %s PING", socket_file.path)
    assert "PONG" not in other.stdout and "Permission denied" in other.stdout + other.stderr


@pytest.mark.parametrize("name", INSTANCES)
def test_refuses_without_the_password(host, hostvars, name, address):
    anonymous = cli(host, hostvars, name, "PING", address=address, secret="")
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    wrong = cli(host, hostvars, name, "PING", address=address, secret="not-the-password-at-all")
    assert "WRONGPASS" in wrong.stdout + wrong.stderr


@pytest.mark.parametrize("name", INSTANCES)
def test_listens_only_on_its_addresses(host, hostvars, name):
    listening = host.run("ss -H -ltnp")
    assert listening.rc == 0, listening.stderr
    wanted_port = port(hostvars, name)
    sockets = set()
    for line in listening.stdout.splitlines():
        local = line.split()[3]
        address, _, local_port = local.rpartition(":")
        if int(local_port) == wanted_port:
            assert "redis-server" in line, line
            sockets.add(address)
    assert sockets == {"127.0.0.1", hostvars["private_ip"]}, listening.stdout


@pytest.mark.parametrize("name", INSTANCES)
def test_unit_stays_sandboxed(host, name):
    # Debian's redis-server@ unit is hardened; the role's drop-in must keep it that way.
    assert exposure(host, unit(name)) <= 5.0


@pytest.mark.parametrize("name", INSTANCES)
def test_unit_is_enabled_and_restarts_on_failure(host, name):
    service = host.service(unit(name))
    assert service.is_enabled
    assert service.is_running, journal(host, name)
    assert service.systemd_properties["Restart"] == "on-failure"
    # Debian's hardening is still in force under the flaskfleet drop-in.
    assert service.systemd_properties["ProtectSystem"] == "strict"
    assert service.systemd_properties["NoNewPrivileges"] == "yes"


def test_package_default_instance_stays_off(host):
    default = host.service("redis-server.service")
    assert not default.is_running
    assert host.run("systemctl is-enabled redis-server.service").stdout.strip() == "masked"


@pytest.mark.parametrize("name", INSTANCES)
def test_systemd_brings_a_killed_instance_back(host, hostvars, name):
    before = host.service(unit(name)).systemd_properties["MainPID"]
    assert before != "0", journal(host, name)
    host.run_expect([0], "kill -9 %s", before)
    # Wait (bounded) until systemd reports a new, running main process.
    waited = host.run(
        "for i in $(seq 100); do "
        "pid=$(systemctl show -P MainPID %s); state=$(systemctl is-active %s); "
        '[ "$pid" != 0 ] && [ "$pid" != %s ] && [ "$state" = active ] && exit 0; '
        "sleep 0.1; done; exit 1",
        unit(name),
        unit(name),
        before,
    )
    assert waited.rc == 0, journal(host, name)
    assert cli(host, hostvars, name, "PING").stdout.strip() == "PONG", journal(host, name)


def test_cache_evicts_old_keys_under_memory_pressure(host, hostvars):
    count = 16000  # about twice the scenario's 8mb cache maxmemory
    evicted_before = int(info_field(host, hostvars, "cache", "stats", "evicted_keys"))
    try:
        errors, replies = pipe(host, hostvars, "cache", "SET lru:{i} " + VALUE, count)
        assert (errors, replies) == (0, count), journal(host, "cache")
        evicted = int(info_field(host, hostvars, "cache", "stats", "evicted_keys")) - evicted_before
        assert evicted > 0
        oldest = count_existing(host, hostvars, "cache", "lru", range(1000))
        newest = count_existing(host, hostvars, "cache", "lru", range(count - 1000, count))
        # LRU: the first keys written made room for the last ones.
        assert oldest < 500 < newest, (oldest, newest)
    finally:
        cli(host, hostvars, "cache", "FLUSHDB")


def test_broker_refuses_writes_past_its_limit_instead_of_evicting(host, hostvars):
    count = 8000  # about twice the scenario's 4mb broker maxmemory
    try:
        errors, replies = pipe(host, hostvars, "broker", "SET queue:{i} " + VALUE, count)
        assert replies == count
        assert errors > 0, journal(host, "broker")
        refused = cli(host, hostvars, "broker", "SET", "one-more", "value")
        assert refused.stdout.startswith("OOM"), refused.stdout + refused.stderr
        assert int(info_field(host, hostvars, "broker", "stats", "evicted_keys")) == 0
        # Nothing accepted was dropped to make room: every stored key is still there,
        # the oldest ones included.
        assert int(cli(host, hostvars, "broker", "DBSIZE").stdout) == count - errors
        assert count_existing(host, hostvars, "broker", "queue", range(1000)) == 1000
    finally:
        # FLUSHDB is disabled on the broker: delete the test keys one by one.
        pipe(host, hostvars, "broker", "DEL queue:{i}", count)
    assert cli(host, hostvars, "broker", "DBSIZE").stdout.strip() == "0"


@pytest.mark.parametrize(("name", "survives"), [("broker", True), ("cache", False)])
def test_only_the_broker_keeps_keys_across_a_restart(host, hostvars, name, survives):
    key, value = f"restart-{uuid.uuid4().hex}", uuid.uuid4().hex
    assert cli(host, hostvars, name, "SET", key, value).stdout.strip() == "OK"
    host.run_expect([0], "systemctl restart %s", unit(name))
    got = cli(host, hostvars, name, "GET", key)
    assert got.rc == 0, got.stderr + journal(host, name)
    assert (got.stdout.strip() == value) is survives, got.stdout + journal(host, name)
    cli(host, hostvars, name, "DEL", key)


@pytest.mark.parametrize(
    "command",
    [
        ["FLUSHALL"],
        ["FLUSHDB"],
        ["CONFIG", "GET", "maxmemory"],
        ["DEBUG", "SLEEP", "0"],
        ["KEYS", "*"],
    ],
)
def test_dangerous_commands_are_disabled_on_the_broker(host, hostvars, command):
    out = cli(host, hostvars, "broker", *command)
    assert "unknown command" in out.stdout + out.stderr, out.stdout


def test_cache_keeps_its_admin_commands_and_evicts_lru(host, hostvars):
    out = cli(host, hostvars, "cache", "CONFIG", "GET", "maxmemory-policy")
    assert out.stdout.split() == ["maxmemory-policy", "allkeys-lru"], out.stdout


@pytest.mark.parametrize("name", INSTANCES)
def test_redis_finds_nothing_to_warn_about_in_the_kernel(host, name):
    # Both instances restarted during this run's converge; their start log is current.
    log = journal(host, name)
    for warning in ("overcommit_memory", "TCP backlog setting"):
        assert warning not in log, log
    assert host.file("/proc/sys/vm/overcommit_memory").content_string.strip() == "1"


def test_transparent_huge_pages_off_where_the_host_allows(host):
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    writable = host.run("test -w %s", thp).rc == 0
    if writable:
        assert "[never]" in host.file(thp).content_string
        assert host.service("disable-thp.service").is_enabled
    else:
        # A container shares the host's kernel: the role must leave it alone
        # rather than install a unit that cannot work.
        assert not host.file("/etc/systemd/system/disable-thp.service").exists
    assert host.run("systemctl is-failed --quiet disable-thp.service").rc != 0


@pytest.mark.parametrize("name", INSTANCES)
@pytest.mark.parametrize("suffix", ["conf", "auth.conf"])
def test_configuration_is_hidden_from_other_users(host, name, suffix):
    path = f"/etc/redis/redis-{name}.{suffix}"
    assert host.run("test -s %s", path).rc == 0
    peek = host.run("runuser -u nobody -- cat %s", path)
    assert peek.rc != 0
    assert "Permission denied" in peek.stderr


def test_daemon_cannot_rewrite_its_own_configuration(host, hostvars):
    # CONFIG is still allowed on the cache, but the unit keeps /etc/redis
    # read-only for the daemon: the password and bind cannot be changed from a
    # client connection.
    before = host.file("/etc/redis/redis-cache.conf").md5sum
    out = cli(host, hostvars, "cache", "CONFIG", "REWRITE")
    assert out.stdout.startswith("ERR"), out.stdout
    assert host.file("/etc/redis/redis-cache.conf").md5sum == before


def test_no_password_in_the_journal(host):
    # The role's live CONFIG SET (side_effect.yml changes a memory limit) authenticates on
    # redis-cli's stdin: neither password may reach a command line logged by sudo or a module.
    entries = host.run("journalctl --no-pager -o cat")
    assert entries.rc == 0 and "Invoked with" in entries.stdout
    for name in INSTANCES:
        assert password(name) not in entries.stdout, name
