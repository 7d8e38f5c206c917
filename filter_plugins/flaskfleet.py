"""The flaskfleet topology model: how hosts find each other, computed from the inventory.

Roles never read ``groups[...]``. ``flaskfleet_topology`` turns the inventory
into everything peers need, once (``playbooks/vars/wiring.yml`` exposes it as
``topology``); ``flaskfleet_topology_problems`` is the preflight's check of the
inventory's shape.
Every filter works with ``--limit``: a host's address comes from ``private_ip``
in the inventory first, then from gathered facts, then from ``ansible_host``
when it is an IP address; a host with none of them is an error that names the fix.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from urllib.parse import quote

try:  # Ansible is not needed to unit-test the pure functions.
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]


def _is_ip(value) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def flaskfleet_address(host: str, hostvars) -> str:
    """The address peers use to reach ``host`` on the private network."""
    hv = hostvars[host] if host in hostvars else {}  # noqa: SIM401 - HostVars has no .get()
    private_ip = hv.get("private_ip")
    if private_ip:
        if not _is_ip(private_ip):
            raise AnsibleFilterError(
                f"{host}: private_ip={private_ip!r} is not an IP address; "
                "set it to the host's address on the private network."
            )
        return str(private_ip)
    facts = hv.get("ansible_facts") or {}
    default_ipv4 = facts.get("default_ipv4") or hv.get("ansible_default_ipv4") or {}
    if default_ipv4.get("address"):
        return str(default_ipv4["address"])
    ansible_host = hv.get("ansible_host")
    if ansible_host and _is_ip(ansible_host) and not ipaddress.ip_address(ansible_host).is_loopback:
        return str(ansible_host)
    raise AnsibleFilterError(
        f"{host}: no private address known. Set private_ip for it in the inventory "
        "(needed when running with --limit that excludes it), or gather its facts."
    )


def flaskfleet_addresses(hosts, hostvars) -> list[str]:
    """Addresses of several hosts, in inventory order, without duplicates."""
    seen: list[str] = []
    for host in hosts or []:
        addr = flaskfleet_address(host, hostvars)
        if addr not in seen:
            seen.append(addr)
    return seen


def flaskfleet_slot_name(host: str) -> str:
    """A PostgreSQL replication slot name derived from an inventory hostname."""
    name = re.sub(r"[^a-z0-9_]", "_", str(host).lower())
    if not name or not re.match(r"[a-z_]", name[0]):
        name = "r_" + name
    return name[:63]


def flaskfleet_postgres_url(
    address: str, user: str, password: str, dbname: str, port: int = 5432, **params
) -> str:
    """A SQLAlchemy URL (psycopg 3 driver) with credentials quoted, ``params`` as its query."""
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
    return (
        f"postgresql+psycopg://{quote(str(user), safe='')}:{quote(str(password), safe='')}"
        f"@{_host_port(address, port)}/{quote(str(dbname), safe='')}"
        + (f"?{query}" if query else "")
    )


# libpq's connect_timeout (seconds) in the URLs the app gets. It bounds the whole connection
# attempt: TCP, TLS and SCRAM, not only a dead host's silence. A dead host in a multi-host URL
# costs a new connection at most this long before the next host is tried; a live host that is
# slow to hand-shake (the app server staging a release on the same CPUs, a saturated database
# host) fails the request once this is exceeded. At 2 s (libpq's minimum), new connections made
# while a converge saturated the 2-core lab took longer, and their requests failed.
DB_CONNECT_TIMEOUT = 5


def flaskfleet_postgres_multihost_url(
    nodes, user: str, password: str, dbname: str, **params
) -> str:
    """A SQLAlchemy URL (psycopg 3) over several servers, tried in order by libpq.

    ``nodes`` is ``[(address, port), ...]``; each becomes a ``host=address:port`` query
    parameter (SQLAlchemy's multi-host form), followed by ``params`` (for example
    ``target_session_attrs=read-write``: libpq skips a server that does not accept writes).
    """
    if not nodes:
        raise AnsibleFilterError("a PostgreSQL URL needs at least one host")
    query = [f"host={_host_port(address, port)}" for address, port in nodes]
    query += [f"{k}={quote(str(v), safe='')}" for k, v in params.items()]
    return (
        f"postgresql+psycopg://{quote(str(user), safe='')}:{quote(str(password), safe='')}"
        f"@/{quote(str(dbname), safe='')}?{'&'.join(query)}"
    )


def _host_port(address, port) -> str:
    address = str(address)
    if ":" in address:  # IPv6
        address = f"[{address}]"
    return f"{address}:{int(port)}"


def flaskfleet_redis_url(
    address: str, password: str, port: int, db: int = 0, ca_file: str = ""
) -> str:
    """A redis:// URL with the password quoted; with ``ca_file``, a rediss:// URL whose
    server certificate is verified against it (redis-py, kombu and Celery read these)."""
    if not ca_file:
        return f"redis://:{quote(str(password), safe='')}@{address}:{int(port)}/{int(db)}"
    return (
        f"rediss://:{quote(str(password), safe='')}@{address}:{int(port)}/{int(db)}"
        f"?ssl_cert_reqs=required&ssl_ca_certs={quote(str(ca_file), safe='/')}"
    )


# Where every host keeps the private CA's certificate (roles/pki, entry point "ca"): the
# URLs the app gets name it, so TLS clients verify the servers' certificates against it.
CA_FILE = "/etc/flaskfleet/ca.crt"


# --- The topology model -----------------------------------------------------
#
# Settings a user may put in the inventory that change the wiring, with their
# only default. Host-level settings may be set in group_vars or per host.
# tests/test_topology.py checks that the roles' own defaults agree.
DEFAULTS = {
    "flaskfleet_gunicorn_instances": 2,
    "flaskfleet_gunicorn_base_port": 8001,
    "flaskfleet_upstream_weight": 1,
    "flaskfleet_drain": False,
    "flaskfleet_redis_cache_port": 6379,
    "flaskfleet_redis_broker_port": 6380,
    "celery_beat": False,
}

# Ports the roles listen on that the model does not wire, with the roles' defaults
# (tests/test_topology.py checks they agree): what the port-collision check needs
# to know about a host that holds several tiers.
ROLE_PORTS = {
    "loadbalancers": {
        "nginx_http_port": 80,
        "nginx_https_port": 443,
        "nginx_status_port": 8081,
        "nginx_private_port": 8088,
    },
    "postgres_primary": {"postgresql_port": 5432},
    "postgres_replicas": {"postgresql_port": 5432},
}

# Exporters Prometheus scrapes on the hosts (docs/architecture.md, "Ports"); the
# prometheus_exporters role's port defaults agree (tests/test_topology.py checks it).
EXPORTER_PORTS = {"node": 9100, "nginx": 9113, "postgres": 9187, "redis": 9121}
# Prometheus and Alertmanager on the monitoring hosts (roles/monitoring's defaults agree).
MONITORING_PORTS = {"prometheus": 9090, "alertmanager": 9093}

# Inventory groups (the public API) and the roles that run on each.
TIER_ROLES = {
    "postgres_primary": ["postgresql", "pgbackrest"],
    "postgres_replicas": ["postgresql", "pgbackrest"],
    "backup": ["pgbackrest", "broker_backup"],
    "redis": ["redis"],
    "appservers": ["app_release", "gunicorn"],
    "workers": ["app_release", "celery"],
    "loadbalancers": ["nginx"],
    "monitoring": ["monitoring"],
}
SERVICE_GROUPS = [
    "backup",
    "loadbalancers",
    "appservers",
    "workers",
    "redis",
    "postgres_primary",
    "postgres_replicas",
]

# Role variables the playbooks compute from the topology: set in an inventory
# they would be silently overridden, so the preflight names the setting to use.
COMPUTED_ROLE_VARIABLES = {
    "gunicorn_instances": "flaskfleet_gunicorn_instances",
    "gunicorn_base_port": "flaskfleet_gunicorn_base_port",
    "gunicorn_bind_address": "private_ip",
    "gunicorn_forwarded_allow_ips": "the loadbalancers group",
    "redis_cache_port": "flaskfleet_redis_cache_port",
    "redis_broker_port": "flaskfleet_redis_broker_port",
    "nginx_upstream_servers": "the appservers group",
    "nginx_upstream_weight": "flaskfleet_upstream_weight (on the app server)",
    "celery_beat_enabled": "celery_beat: true on one worker",
    "app_release_database_url": "the postgres_primary group",
    "app_release_replica_urls": "the postgres_replicas group",
    "postgresql_role": "the postgres_primary / postgres_replicas groups",
    "postgresql_replica_slots": "the postgres_replicas group",
    "postgresql_monitoring_user": "the monitoring group (the exporters' login)",
    "prometheus_exporters_enabled": "the inventory's groups (flaskfleet_scrape_targets)",
    "prometheus_exporters_listen_address": "private_ip",
    "prometheus_exporters_redis_targets": "the redis group and the Redis passwords",
    "monitoring_listen_address": "private_ip",
    "monitoring_scrape_targets": "the inventory's groups (flaskfleet_scrape_targets)",
    "monitoring_basic_auth_password": "flaskfleet_monitoring_password",
    "postgresql_primary_address": "the postgres_primary group",
    "postgresql_archive_command": "the backup group (pgBackRest archives WAL when it has a host)",
    "postgresql_restore_command": "the backup group",
    "postgresql_systemd_read_write_paths": "the backup group (pgBackRest's spool and log)",
    "postgresql_replica_clone_method": "the backup group (pgbackrest when it has a host)",
    "pgbackrest_role": "the backup and PostgreSQL groups",
    "pgbackrest_address": "private_ip",
    "pgbackrest_repository": "the backup group",
    "pgbackrest_database_hosts": "the PostgreSQL groups",
    "pgbackrest_cipher_pass": "flaskfleet_backup_cipher_pass",
    "pgbackrest_pki_ca_dir": "flaskfleet_pki_dir",
    "postgresql_tls": "flaskfleet_tls",
    "postgresql_pki_ca_dir": "flaskfleet_pki_dir",
    "app_release_pki_ca_dir": "flaskfleet_pki_dir",
    "redis_tls": "flaskfleet_tls",
    "central_journal_receiver": "the monitoring group (its first host receives)",
    "central_journal_receiver_address": "the monitoring group (its first host's private_ip)",
    "central_journal_tls": "flaskfleet_tls",
    "central_journal_pki_ca_dir": "flaskfleet_pki_dir",
    "redis_pki_ca_dir": "flaskfleet_pki_dir",
    "broker_backup_tls": "flaskfleet_tls",
    "broker_backup_pki_ca_dir": "flaskfleet_pki_dir",
    "firewall_service_rules": "the inventory's groups (playbooks/firewall.yml)",
    "firewall_public_ports": "nginx_http_port / nginx_https_port on the load balancers",
    "broker_backup_broker_host": "the redis group",
    "broker_backup_broker_port": "flaskfleet_redis_broker_port",
    "broker_backup_broker_password": "flaskfleet_redis_broker_password",
    # The app contract (flaskfleet_app, docs/app-contract.md) fills these.
    "app_release_source": "flaskfleet_app.source (or -e app_release_src=DIR once)",
    "app_release_wsgi_app": "flaskfleet_app.wsgi",
    "app_release_celery_app": "flaskfleet_app.celery",
    "app_release_migrate_command": "flaskfleet_app.migrate",
    "app_release_check_command": "flaskfleet_app.check_config",
    "app_release_env_names": "flaskfleet_app.env",
    "app_release_environment": "flaskfleet_app.extra_env",
    "app_release_static_dir": "flaskfleet_app.static.dir",
    "app_release_system_packages": "flaskfleet_app.system_packages",
    "gunicorn_wsgi_app": "flaskfleet_app.wsgi",
    "gunicorn_hooks": "flaskfleet_app.gunicorn.hooks",
    "gunicorn_health_path": "flaskfleet_app.health.path",
    "gunicorn_health_status": "flaskfleet_app.health.status",
    "gunicorn_health_version_field": "flaskfleet_app.health.version_field",
    "celery_app": "flaskfleet_app.celery",
    "nginx_static_location": "flaskfleet_app.static.url",
}


def _hv(hostvars, host) -> dict:
    return hostvars[host] if host in hostvars else {}  # noqa: SIM401 - HostVars has no .get()


def _setting(hostvars, host, name):
    value = _hv(hostvars, host).get(name)
    return DEFAULTS[name] if value is None else value


def _as_int(value):
    if isinstance(value, bool):
        raise ValueError(value)
    return int(str(value).strip())


def _as_bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise ValueError(value)


def _group(groups, name) -> list[str]:
    return list((groups or {}).get(name) or [])


def flaskfleet_topology_problems(groups, hostvars, primary_override: str = "") -> list[str]:
    """Everything wrong with an inventory, each message naming the fix (empty = good).

    The preflight refuses any of them. The model itself (flaskfleet_topology)
    refuses only values it cannot use; a partial inventory (one tier, as the
    role scenarios have) still gets the wiring of what it holds.
    """
    problems = _shape_problems(groups, hostvars, primary_override)
    problems.extend(_value_problems(groups, hostvars))
    problems.extend(_address_problems(groups, hostvars))
    problems.extend(_port_collision_problems(groups, hostvars))
    in_service = {h for g in SERVICE_GROUPS for h in _group(groups, g)}
    for host in sorted(set(_group(groups, "all")) | in_service):
        for name, instead in COMPUTED_ROLE_VARIABLES.items():
            if name in _hv(hostvars, host):
                problems.append(
                    f"{host}: {name} is computed from the inventory by the playbooks and would be "
                    f"ignored; set {instead} instead."
                )
    return problems


def _shape_problems(groups, hostvars, primary_override) -> list[str]:
    problems: list[str] = []
    primary = _group(groups, "postgres_primary")
    replicas = _group(groups, "postgres_replicas")
    if len(primary) != 1:
        problems.append(
            f"Group postgres_primary has {len(primary)} host(s) {primary}; it needs exactly one. "
            "Put one host in postgres_primary and the others in postgres_replicas."
        )
    both = [h for h in primary if h in replicas]
    if both:
        problems.append(
            f"{', '.join(both)} is in both postgres_primary and postgres_replicas. "
            "A host is either the primary or a replica: remove it from one group."
        )
    if primary_override and primary_override not in primary + replicas:
        problems.append(
            f"flaskfleet_primary_override={primary_override} is not in postgres_primary or "
            f"postgres_replicas {primary + replicas}: name a PostgreSQL host of the inventory."
        )
    apps, lbs = _group(groups, "appservers"), _group(groups, "loadbalancers")
    if not apps or not lbs:
        problems.append(
            f"flaskfleet needs at least one host in appservers (has {len(apps)}) and one in "
            f"loadbalancers (has {len(lbs)}). Add them to the inventory."
        )
    redis = _group(groups, "redis")
    if len(redis) != 1:
        problems.append(
            f"Group redis has {len(redis)} host(s); it needs exactly one "
            "(it runs both the cache and the broker instance)."
        )
    workers = _group(groups, "workers")
    beat = []
    for host in workers:
        try:
            if _as_bool(_setting(hostvars, host, "celery_beat")):
                beat.append(host)
        except ValueError:
            pass  # a value problem
    if len(beat) > 1:
        problems.append(
            f"celery_beat is true on {', '.join(beat)}: two beat processes would run every "
            "periodic task twice. Set celery_beat: true on exactly one worker "
            "(default: the first worker)."
        )
    backup = _group(groups, "backup")
    if len(backup) > 1:
        problems.append(
            f"Group backup has {len(backup)} hosts {backup}; it holds at most one "
            "(the pgBackRest repository). Keep one host in backup."
        )
    on_db = [h for h in backup if h in primary + replicas]
    if on_db:
        problems.append(
            f"{', '.join(on_db)} is in backup and in a PostgreSQL group: a repository on a "
            "database host is lost with that host. Put the repository on a host of its own."
        )
    in_service = {h for g in SERVICE_GROUPS for h in _group(groups, g)}
    retired_busy = [h for h in _group(groups, "retired") if h in in_service]
    if retired_busy:
        problems.append(
            f"{', '.join(retired_busy)} is in the retired group and still in a service group. "
            "Retiring drains a host and stops its units: remove it from "
            f"{', '.join(SERVICE_GROUPS)}, or from retired to keep it in service."
        )
    return problems


def _value_problems(groups, hostvars) -> list[str]:
    problems: list[str] = []
    in_service = {h for g in SERVICE_GROUPS for h in _group(groups, g)}
    for host in _group(groups, "workers"):
        try:
            _as_bool(_setting(hostvars, host, "celery_beat"))
        except ValueError:
            problems.append(f"{host}: celery_beat must be true or false.")
    apps, redis = _group(groups, "appservers"), _group(groups, "redis")
    for host in _group(groups, "all") or sorted(in_service):
        private_ip = _hv(hostvars, host).get("private_ip")
        if private_ip is not None and not _is_ip(private_ip):
            problems.append(
                f"{host}: private_ip={private_ip} is not an IP address. Set it to the host's "
                "address on the private network (or remove it to use the gathered default address)."
            )
    for host in apps:
        problems.extend(_app_setting_problems(hostvars, host))
    if redis:
        for name in ("flaskfleet_redis_cache_port", "flaskfleet_redis_broker_port"):
            problems.extend(_port_problems(hostvars, redis[0], name))
        try:
            same = _as_int(_setting(hostvars, redis[0], "flaskfleet_redis_cache_port")) == _as_int(
                _setting(hostvars, redis[0], "flaskfleet_redis_broker_port")
            )
        except ValueError:
            same = False
        if same:
            problems.append(
                f"{redis[0]}: flaskfleet_redis_cache_port and flaskfleet_redis_broker_port are the "
                "same; the cache and the broker are separate instances and need a port each."
            )
    return problems


PRIVATE_NETWORKS = "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or fd00::/8"


def _address_problems(groups, hostvars) -> list[str]:
    """Addresses peers cannot use: public, shared by two hosts, or unknown but public.

    A host's address (flaskfleet_address) is what its peers connect to and what its
    services listen on (Redis, PostgreSQL, gunicorn), so it must be on the private network
    and belong to that host alone. Addresses are checked as the inventory gives them;
    gathered ones are not known before the run.
    """
    problems: list[str] = []
    in_service = {h for g in SERVICE_GROUPS for h in _group(groups, g)}
    owner: dict[str, str] = {}
    for host in _group(groups, "all") or sorted(in_service):
        hv = _hv(hostvars, host)
        private_ip = hv.get("private_ip")
        if private_ip is not None and private_ip != "":
            if not _is_ip(private_ip):
                continue  # _value_problems names it
            address = ipaddress.ip_address(str(private_ip))
            if str(address) in owner:
                problems.append(
                    f"{host}: private_ip={address} is also the private_ip of "
                    f"{owner[str(address)]}; each host needs its own address. Fix the address, "
                    "or list one host in several groups to put several tiers on one machine."
                )
            owner.setdefault(str(address), host)
            if host in in_service and address.is_global:
                problems.append(
                    f"{host}: private_ip={address} is a public address: its peers would reach "
                    "it over the internet and its services would listen there. Set private_ip "
                    f"to its address on the private network ({PRIVATE_NETWORKS})."
                )
            continue
        ansible_host = hv.get("ansible_host")
        public_host = _is_ip(ansible_host) and ipaddress.ip_address(str(ansible_host)).is_global
        if host in in_service and public_host:
            problems.append(
                f"{host}: private_ip is not set and ansible_host={ansible_host} is a public "
                "address: peers would use the host's gathered default-route address, "
                "usually that public one, and its services would listen there. Set "
                f"private_ip to its address on the private network ({PRIVATE_NETWORKS})."
            )
    return problems


def _host_ports(groups, hostvars, host) -> list[tuple[int, int, str]]:
    """The (first, last, setting) port ranges the tiers of one host listen on."""
    ranges = []
    if host in _group(groups, "appservers"):
        with contextlib.suppress(ValueError):
            base = _as_int(_setting(hostvars, host, "flaskfleet_gunicorn_base_port"))
            count = _as_int(_setting(hostvars, host, "flaskfleet_gunicorn_instances"))
            if count >= 1:
                ranges.append((base, base + count - 1, "flaskfleet_gunicorn_base_port (gunicorn)"))
    if host in _group(groups, "redis"):
        for name in ("flaskfleet_redis_cache_port", "flaskfleet_redis_broker_port"):
            with contextlib.suppress(ValueError):
                port = _as_int(_setting(hostvars, host, name))
                ranges.append((port, port, name))
    seen = set()
    for group, settings in ROLE_PORTS.items():
        if host not in _group(groups, group):
            continue
        for name, default in settings.items():
            if name in seen:
                continue
            seen.add(name)
            value = _hv(hostvars, host).get(name)
            with contextlib.suppress(ValueError):
                port = default if value is None else _as_int(value)
                ranges.append((port, port, name))
    return ranges


def _port_collision_problems(groups, hostvars) -> list[str]:
    """Two tiers on one host that would listen on the same port: the second fails to
    start after the first has changed the host. Refused before anything changes."""
    problems = []
    in_service = {h for g in SERVICE_GROUPS for h in _group(groups, g)}
    for host in sorted(in_service):
        ranges = _host_ports(groups, hostvars, host)
        for i, (first, last, name) in enumerate(ranges):
            for other_first, other_last, other in ranges[i + 1 :]:
                if first <= other_last and other_first <= last:
                    shown = str(first) if first == last else f"{first}-{last}"
                    problems.append(
                        f"{host}: {name} uses port {shown}, which {other} "
                        f"({other_first}) also uses on this host; move one of them "
                        "(the tiers on one host need a port each)."
                    )
    return problems


def _port_problems(hostvars, host, name, low=1024):
    try:
        port = _as_int(_setting(hostvars, host, name))
    except ValueError:
        return [f"{host}: {name}={_setting(hostvars, host, name)!r} is not a port number."]
    if not low <= port <= 65535:
        return [f"{host}: {name}={port} must be a port from {low} to 65535."]
    return []


def _app_setting_problems(hostvars, host):
    problems = []
    try:
        count = _as_int(_setting(hostvars, host, "flaskfleet_gunicorn_instances"))
    except ValueError:
        count = None
    if count is None or not 1 <= count <= 64:
        problems.append(
            f"{host}: flaskfleet_gunicorn_instances="
            f"{_setting(hostvars, host, 'flaskfleet_gunicorn_instances')!r} must be a whole number "
            "from 1 to 64 (gunicorn instances on the host, one systemd unit each)."
        )
    port_problems = _port_problems(hostvars, host, "flaskfleet_gunicorn_base_port")
    problems.extend(port_problems)
    if count and not port_problems:
        last = _as_int(_setting(hostvars, host, "flaskfleet_gunicorn_base_port")) + count - 1
        if last > 65535:
            problems.append(
                f"{host}: the last gunicorn port would be {last}; "
                "lower flaskfleet_gunicorn_base_port."
            )
    try:
        weight = _as_int(_setting(hostvars, host, "flaskfleet_upstream_weight"))
    except ValueError:
        weight = 0
    if not 1 <= weight <= 1000:
        problems.append(
            f"{host}: flaskfleet_upstream_weight="
            f"{_setting(hostvars, host, 'flaskfleet_upstream_weight')!r} must be a whole number "
            "from 1 to 1000 "
            "(its share of requests at the load balancers)."
        )
    try:
        _as_bool(_setting(hostvars, host, "flaskfleet_drain"))
    except ValueError:
        problems.append(f"{host}: flaskfleet_drain must be true or false.")
    return problems


def flaskfleet_role_hosts(groups) -> dict[str, list[str]]:
    """Which hosts each role runs on (``common`` on every host), in inventory order."""
    roles: dict[str, list[str]] = {
        "common": _group(groups, "all"),
        "firewall": _group(groups, "all"),
    }
    for group, names in TIER_ROLES.items():
        for role in names:
            roles[role] = list(dict.fromkeys(roles.get(role, []) + _group(groups, group)))
    retired = set(_group(groups, "retired"))
    managed = [h for h in _group(groups, "all") if h not in retired]
    # With a monitoring host, every managed host takes part in the central journal (the
    # first monitoring host receives, the others send).
    if _group(groups, "monitoring"):
        roles["central_journal"] = managed
    # Exporters run where something is scraped: every host but the retired ones, once the
    # inventory has a monitoring host (flaskfleet_scrape_targets says which on each).
    roles["prometheus_exporters"] = managed if _group(groups, "monitoring") else []
    return roles


def flaskfleet_topology(groups, hostvars, primary_override: str = "", settings=None) -> dict:
    """Everything peers need, computed from the inventory in one place.

    ``groups`` and ``hostvars`` are Ansible's; ``primary_override`` names the
    PostgreSQL host that is the primary whatever postgres_primary says (after
    playbooks/promote_replica.yml); ``settings`` holds the cluster-wide values
    the URLs need (``db_name``, ``db_user``, ``db_password``,
    ``redis_cache_password``, ``redis_broker_password``; URLs are empty without
    them) and ``tls`` (default true: TLS URLs that verify against ``CA_FILE``).
    docs/architecture.md ("Topology model") documents every key.
    Tiers missing from the inventory give ``None`` (primary, redis) or empty
    lists; values the model cannot use raise with the preflight's message.
    """
    problems = _value_problems(groups, hostvars)
    if primary_override and primary_override not in _group(groups, "postgres_primary") + _group(
        groups, "postgres_replicas"
    ):
        problems.append(
            f"flaskfleet_primary_override={primary_override} is not a PostgreSQL host "
            "of the inventory."
        )
    if problems:
        raise AnsibleFilterError("The inventory is not usable: " + " | ".join(problems))
    settings = dict(settings or {})

    def node(host):
        return {"host": host, "address": flaskfleet_address(host, hostvars)}

    primary_host = primary_override or (_group(groups, "postgres_primary") + [""])[0]
    replica_hosts = [h for h in _group(groups, "postgres_replicas") if h != primary_host]
    fenced = [
        h
        for h in _group(groups, "postgres_primary")
        if h != primary_host and h not in replica_hosts
    ]
    pg_port = 5432
    primary = (
        {**node(primary_host), "port": pg_port, "slot": flaskfleet_slot_name(primary_host)}
        if primary_host
        else None
    )
    replicas = [
        {**node(h), "port": pg_port, "slot": flaskfleet_slot_name(h)} for h in replica_hosts
    ]

    appservers = []
    for host in _group(groups, "appservers"):
        count = _as_int(_setting(hostvars, host, "flaskfleet_gunicorn_instances"))
        base = _as_int(_setting(hostvars, host, "flaskfleet_gunicorn_base_port"))
        appservers.append(
            {
                **node(host),
                "instances": count,
                "base_port": base,
                "ports": list(range(base, base + count)),
                "weight": _as_int(_setting(hostvars, host, "flaskfleet_upstream_weight")),
                "drain": _as_bool(_setting(hostvars, host, "flaskfleet_drain")),
            }
        )
    upstream = [
        {
            "host": a["host"],
            "address": a["address"],
            "port": p,
            "weight": a["weight"],
            "down": a["drain"],
        }
        for a in appservers
        for p in a["ports"]
    ]

    worker_hosts = _group(groups, "workers")
    flagged = [h for h in worker_hosts if _as_bool(_setting(hostvars, h, "celery_beat"))]
    beat_host = (flagged + worker_hosts + [""])[0]
    workers = [{**node(h), "beat": h == beat_host} for h in worker_hosts]
    loadbalancers = [node(h) for h in _group(groups, "loadbalancers")]

    redis_host = (_group(groups, "redis") + [""])[0]
    redis = (
        {
            **node(redis_host),
            "cache_port": _as_int(_setting(hostvars, redis_host, "flaskfleet_redis_cache_port")),
            "broker_port": _as_int(_setting(hostvars, redis_host, "flaskfleet_redis_broker_port")),
        }
        if redis_host
        else None
    )

    backup_host = (_group(groups, "backup") + [""])[0]
    backup = {**node(backup_host), "stanza": "flaskfleet"} if backup_host else None
    monitoring = [node(h) for h in _group(groups, "monitoring")]

    def unique(items):
        return list(dict.fromkeys(items))

    app_clients = unique([a["address"] for a in appservers] + [w["address"] for w in workers])
    monitoring_addresses = [m["address"] for m in monitoring]
    db_args = [settings.get(k) for k in ("db_user", "db_password", "db_name")]
    have_db = primary is not None and all(v is not None for v in db_args)
    # Writes: every database host, the primary first, and libpq connects to the first one
    # that accepts writes. After a promotion the app reaches the new primary with no
    # re-render; the fenced former primary is left out. Reads: one URL per replica (the app
    # spreads reads over them and falls back to the write URL), with no session
    # requirement, so a promoted replica still serves reads from an older rendering.
    # docs/architecture.md ("Database endpoints") says why.
    db_nodes = [(n["address"], n["port"]) for n in ([primary] if primary else []) + replicas]
    # TLS (on unless settings say tls: false): libpq verifies the server's certificate and
    # its name (the address, an IP SAN) against the private CA; so do the Redis clients.
    tls = _as_bool(settings.get("tls", True))
    ca_file = CA_FILE if tls else ""
    db_tls = {"sslmode": "verify-full", "sslrootcert": CA_FILE} if tls else {}
    have_cache = redis is not None and settings.get("redis_cache_password") is not None
    have_broker = redis is not None and settings.get("redis_broker_password") is not None
    urls = {
        "database": flaskfleet_postgres_multihost_url(
            db_nodes,
            *db_args,
            target_session_attrs="read-write",
            connect_timeout=DB_CONNECT_TIMEOUT,
            **db_tls,
        )
        if have_db
        else "",
        "replicas": [
            flaskfleet_postgres_url(
                r["address"],
                *db_args,
                port=r["port"],
                connect_timeout=DB_CONNECT_TIMEOUT,
                **db_tls,
            )
            for r in replicas
        ]
        if have_db
        else [],
        "cache": flaskfleet_redis_url(
            redis["address"], settings["redis_cache_password"], redis["cache_port"], 0, ca_file
        )
        if have_cache
        else "",
        "broker": flaskfleet_redis_url(
            redis["address"], settings["redis_broker_password"], redis["broker_port"], 0, ca_file
        )
        if have_broker
        else "",
        # Celery's results: database 1 of the broker instance.
        "result_backend": flaskfleet_redis_url(
            redis["address"], settings["redis_broker_password"], redis["broker_port"], 1, ca_file
        )
        if have_broker
        else "",
    }

    scrape = flaskfleet_scrape_targets(
        groups,
        hostvars,
        {
            "monitoring": monitoring,
            "loadbalancers": loadbalancers,
            "postgres": ([primary] if primary else []) + replicas,
            "redis": redis,
            "upstream": upstream,
            "tls": tls,
        },
    )

    return {
        "primary": primary,
        "replicas": replicas,
        "fenced": fenced,
        "postgres_hosts": ([primary_host] if primary else []) + replica_hosts,
        "replica_slots": [r["slot"] for r in replicas],
        "loadbalancers": loadbalancers,
        "appservers": appservers,
        "app_hosts": [a["host"] for a in appservers],
        "upstream": upstream,
        "workers": workers,
        "beat_host": beat_host,
        "redis": redis,
        "backup": backup,
        "retired": _group(groups, "retired"),
        "urls": urls,
        "tls": tls,
        "ca_file": CA_FILE,
        "monitoring": monitoring,
        "scrape": scrape,
        "allow": {
            # Who may reach what, by address: pg_hba and the firewall (flaskfleet_firewall_rules).
            "postgres_clients": app_clients,
            # A fenced former primary keeps its replication login: its boot guard asks the
            # others for their timeline before it may start (roles/postgresql, boot guard).
            "replication_clients": unique(
                ([primary["address"]] if primary else [])
                + [r["address"] for r in replicas]
                + [flaskfleet_address(h, hostvars) for h in fenced]
            ),
            "redis_clients": app_clients,
            "gunicorn_clients": unique([lb["address"] for lb in loadbalancers]),
            # Prometheus scrapes gunicorn, PostgreSQL and the exporters from these hosts.
            "monitoring": monitoring_addresses,
            # The pgBackRest repository reaches every database host's pgBackRest server, and
            # they reach it (archive-push, archive-get, restore).
            "backup_clients": unique(
                ([primary["address"]] if primary else [])
                + [r["address"] for r in replicas]
                + [flaskfleet_address(h, hostvars) for h in fenced]
            )
            if backup
            else [],
        },
        "roles": flaskfleet_role_hosts(groups),
        "addresses": {
            n["host"]: n["address"]
            for n in [
                primary,
                *replicas,
                *appservers,
                *workers,
                *loadbalancers,
                redis,
                backup,
                *monitoring,
            ]
            if n
        },
    }


def flaskfleet_scrape_targets(groups, hostvars, tiers) -> dict:
    """What the monitoring hosts scrape, from the inventory (part of ``flaskfleet_topology``).

    Empty when the ``monitoring`` group is: nobody scrapes, so no exporter runs. Otherwise
    ``node`` (every host in service, the monitoring hosts and a fenced former primary; not
    ``retired``), ``nginx`` (load balancers), ``postgres`` (primary and replicas), ``redis``
    (one exporter on the Redis host, one target per instance: ``instance`` and ``target``,
    the URL the exporter connects to), ``gunicorn`` (every instance's ``/metrics``), each
    ``[{host, address, port}]``; and ``exporters``, ``{host: [exporter names]}``, which
    tells the exporters play what runs where (and the firewall what to open).
    """
    monitoring = tiers.get("monitoring") or []
    if not monitoring:
        return {
            "node": [],
            "nginx": [],
            "postgres": [],
            "redis": [],
            "gunicorn": [],
            "exporters": {},
        }
    retired = set(_group(groups, "retired"))
    managed = [
        h
        for h in dict.fromkeys(
            [h for g in [*SERVICE_GROUPS, "monitoring"] for h in _group(groups, g)]
        )
        if h not in retired
    ]
    node = [
        {"host": h, "address": flaskfleet_address(h, hostvars), "port": EXPORTER_PORTS["node"]}
        for h in managed
    ]
    nginx = [{**lb, "port": EXPORTER_PORTS["nginx"]} for lb in tiers.get("loadbalancers") or []]
    postgres = [
        {"host": n["host"], "address": n["address"], "port": EXPORTER_PORTS["postgres"]}
        for n in tiers.get("postgres") or []
    ]
    redis_targets = []
    redis = tiers.get("redis")
    if redis:
        scheme = "rediss" if _as_bool(tiers.get("tls", True)) else "redis"
        for name in ("cache", "broker"):
            redis_targets.append(
                {
                    "host": redis["host"],
                    "address": redis["address"],
                    "port": EXPORTER_PORTS["redis"],
                    "instance": name,
                    "target": f"{scheme}://{_host_port(redis['address'], redis[name + '_port'])}",
                }
            )
    gunicorn = [
        {"host": u["host"], "address": u["address"], "port": u["port"]}
        for u in tiers.get("upstream") or []
    ]
    exporters: dict[str, list[str]] = {}
    for name, targets in (("node", node), ("nginx", nginx), ("postgres", postgres)):
        for t in targets:
            exporters.setdefault(t["host"], []).append(name)
    if redis_targets:
        exporters.setdefault(redis["host"], []).append("redis")
    return {
        "node": node,
        "nginx": nginx,
        "postgres": postgres,
        "redis": redis_targets,
        "gunicorn": gunicorn,
        "exporters": exporters,
    }


def _nft_sources(sources, where: str) -> dict:
    """Split addresses and networks into nftables' IPv4 and IPv6 sets ("any": open to all)."""
    v4, v6, bad = [], [], []
    for source in sources:
        try:
            net = ipaddress.ip_network(str(source).strip(), strict=False)
        except ValueError:
            bad.append(str(source))
            continue
        (v4 if net.version == 4 else v6).append(str(net) if net.num_addresses > 1 else str(net[0]))
    if bad:
        raise AnsibleFilterError(
            f"{where}: {', '.join(bad)} is not an IP address or network (CIDR); "
            "write addresses like 192.0.2.10 or 192.0.2.0/24."
        )
    if "0.0.0.0/0" in v4 and "::/0" in v6:
        return {"any": True, "v4": [], "v6": []}
    # Everyone of one family: that family's whole range (nft accepts 0.0.0.0/0 in a set).
    return {
        "any": False,
        "v4": ["0.0.0.0/0"] if "0.0.0.0/0" in v4 else sorted(set(v4)),
        "v6": ["::/0"] if "::/0" in v6 else sorted(set(v6)),
    }


def flaskfleet_firewall_rules(topology, host: str, ports=None) -> list[dict]:
    """The service ports ``host`` opens to its peers, and to whom, from the topology.

    ``ports`` names the ports that are role settings rather than topology
    (``pgbackrest``, default 8432; ``nginx_private``, the load balancers' private
    listener, default 8088; ``journal_remote``, the central journal's receiver on the
    first monitoring host, default 19532). Each rule: ``name``, ``ports`` (sorted) and
    the sources as ``any``/``v4``/``v6`` (flaskfleet_nft_sources). A rule whose
    sources are empty is left out: nobody may connect. Everything else on the
    host is closed by the firewall role's default drop (docs/architecture.md,
    "Firewall").
    """
    ports = {
        "pgbackrest": 8432,
        "nginx_private": 8088,
        "journal_remote": 19532,
        **dict(ports or {}),
    }
    allow = topology["allow"]
    monitoring = allow.get("monitoring", [])
    backup = topology.get("backup")
    rules: list[tuple[str, list[int], list[str]]] = []
    pg_hosts = list(topology.get("postgres_hosts", [])) + list(topology.get("fenced", []))
    if host in pg_hosts:
        port = (topology.get("primary") or (topology.get("replicas") or [{"port": 5432}])[0])[
            "port"
        ]
        rules.append(
            (
                "postgresql",
                [port],
                allow["postgres_clients"] + allow["replication_clients"] + monitoring,
            )
        )
        if backup:
            rules.append(("pgbackrest", [ports["pgbackrest"]], [backup["address"]]))
    if backup and host == backup["host"]:
        rules.append(("pgbackrest-repository", [ports["pgbackrest"]], allow["backup_clients"]))
    redis = topology.get("redis")
    if redis and host == redis["host"]:
        rules.append(("redis-cache", [redis["cache_port"]], allow["redis_clients"]))
        rules.append(
            (
                "redis-broker",
                [redis["broker_port"]],
                allow["redis_clients"] + ([backup["address"]] if backup else []),
            )
        )
    for app in topology.get("appservers", []):
        if app["host"] == host:
            rules.append(("gunicorn", list(app["ports"]), allow["gunicorn_clients"] + monitoring))
    if host in topology.get("roles", {}).get("nginx", []):
        # The private listener (private paths included): monitoring only; an operator's
        # own tools are let in with firewall_extra_rules.
        rules.append(("nginx-private", [ports["nginx_private"]], monitoring))
    receivers = [m["host"] for m in topology.get("monitoring", [])][:1]
    if host in receivers:
        # The central journal's receiver (the first monitoring host): every managed host
        # uploads its journal to it (roles/central_journal).
        rules.append(
            ("journal-remote", [ports["journal_remote"]], list(topology["addresses"].values()))
        )
    # Exporters: only the monitoring hosts scrape them.
    scrape = topology.get("scrape") or {}
    for name in (scrape.get("exporters") or {}).get(host, []):
        rules.append((f"{name}-exporter", [EXPORTER_PORTS[name]], monitoring))
    # Prometheus and Alertmanager: the other monitoring hosts (an operator's browser
    # comes in through firewall_extra_rules).
    if host in [m["host"] for m in topology.get("monitoring", [])]:
        rules.append(("monitoring", sorted(MONITORING_PORTS.values()), monitoring))
    out = []
    for name, rule_ports, sources in rules:
        # A host's own address reaches it through the loopback interface, which is open.
        peers = [s for s in dict.fromkeys(sources) if s != topology["addresses"].get(host)]
        if not peers:
            continue
        out.append(
            {
                "name": name,
                "ports": sorted(set(int(p) for p in rule_ports)),
                **_nft_sources(peers, f"{host} {name}"),
            }
        )
    return out


def flaskfleet_nft_sources(sources, where: str = "firewall") -> dict:
    """``_nft_sources`` for the firewall role's own lists (SSH, public, extra rules)."""
    if isinstance(sources, str) or not isinstance(sources, (list, tuple)):
        raise AnsibleFilterError(f"{where}: expected a list of addresses or networks.")
    return _nft_sources(sources, where)


def flaskfleet_firewall_problems(values, host: str) -> list[str]:
    """The preflight's check of the firewall role's own lists (addresses, networks, rules)."""
    problems = []
    for name in ("firewall_ssh_sources", "firewall_public_sources"):
        value = values.get(name)
        if value in (None, ""):
            continue
        try:
            flaskfleet_nft_sources(value, f"{host}: {name}")
        except AnsibleFilterError as err:
            problems.append(str(err))
    rules = values.get("firewall_extra_rules")
    if rules in (None, ""):
        return problems
    if not isinstance(rules, (list, tuple)):
        return problems + [f"{host}: firewall_extra_rules must be a list of rules."]
    for i, rule in enumerate(rules):
        where = f"{host}: firewall_extra_rules[{i}]"
        if not isinstance(rule, dict) or not {"name", "ports", "sources"} <= set(rule):
            problems.append(
                f"{where} needs name, ports and sources, e.g. "
                "{name: metrics, ports: [9000], sources: [192.0.2.0/24]}."
            )
            continue
        ports = rule["ports"]

        def port_ok(port):
            try:
                return 1 <= _as_int(port) <= 65535
            except ValueError:
                return False

        if not isinstance(ports, (list, tuple)) or not ports or not all(map(port_ok, ports)):
            problems.append(f"{where} ({rule['name']}): ports must be a list of port numbers.")
        if rule.get("proto", "tcp") not in ("tcp", "udp"):
            problems.append(f"{where} ({rule['name']}): proto must be tcp or udp.")
        try:
            flaskfleet_nft_sources(rule["sources"], f"{where} ({rule['name']}) sources")
        except AnsibleFilterError as err:
            problems.append(str(err))
    return problems


def flaskfleet_spec_without_defaults(options: dict) -> dict:
    """A role's argument_spec options with every ``default`` removed (recursively).

    The preflight validates only what the inventory sets; role defaults may be
    templates that make sense inside the role, not on the controller.
    """

    def strip(opts: dict) -> dict:
        out = {}
        for name, spec in (opts or {}).items():
            spec = {k: v for k, v in dict(spec).items() if k != "default"}
            if "options" in spec:
                spec["options"] = strip(spec["options"])
            out[name] = spec
        return out

    return strip(options)


# --- Preflight checks beyond the inventory's shape ---------------------------


def flaskfleet_deploy_serial_problems(deploy_serial, groups) -> list[str]:
    """What is wrong with ``deploy_serial`` (the rolling batch size) for these app servers.

    A batch is drained at the load balancers only while other app servers answer, so with
    two or more app servers a batch must leave at least one out: a batch of all of them
    would restart together. One app server cannot be drained at all (its instances restart
    one at a time), so any size is the same there. Percentages round as Ansible's ``serial``
    does (down, at least 1).
    """
    if deploy_serial is None:
        return []
    text = str(deploy_serial)
    match = re.fullmatch(r"([1-9][0-9]*)(%?)", text)
    if not match:
        return [
            f"deploy_serial={text} is not a batch size. Give a number of app servers "
            "(1, 2, ...) or a percentage of them (25%); 1 is the default."
        ]
    apps = len(_group(groups, "appservers"))
    size = int(match.group(1))
    batch = (int(size / 100.0 * apps) or 1) if match.group(2) else size
    if apps >= 2 and batch >= apps:
        return [
            f"deploy_serial={text} puts all {apps} app servers in one batch: a batch is drained "
            "only while other app servers answer, so every instance would restart at once. Set "
            f"deploy_serial to at most {apps - 1} (or a percentage under 100%); 1 is the default."
        ]
    return []


# The five cluster secrets and the shortest value each may have: what the role that
# uses it enforces, and never under flaskfleet's own floor of 12 (the postgresql role only
# requires a password). tests/test_topology.py checks these against the roles.
SECRET_MIN_LENGTH_FLOOR = 12
CLUSTER_SECRETS = {
    "flaskfleet_db_password": (SECRET_MIN_LENGTH_FLOOR, "flaskfleet"),
    "flaskfleet_replication_password": (SECRET_MIN_LENGTH_FLOOR, "flaskfleet"),
    # redis role: redis_password_min_length (the host's value when the inventory sets it).
    "flaskfleet_redis_cache_password": (16, "the redis role (redis_password_min_length)"),
    "flaskfleet_redis_broker_password": (16, "the redis role (redis_password_min_length)"),
    # app_release role: its preflight asserts app_release_secret_key | length >= 16.
    "flaskfleet_secret_key": (16, "the app_release role"),
}
# Checked only when the caller names them (the preflight does when the tier exists).
OPTIONAL_CLUSTER_SECRETS = {
    # pgbackrest role: the repository's cipher passphrase (a backup host exists).
    "flaskfleet_backup_cipher_pass": (20, "the pgbackrest role"),
}
# Placeholders of inventory/example/group_vars/all/vault.yml.example and their kin.
PLACEHOLDER = re.compile(r"change[\W_]*me", re.IGNORECASE)
SECRET_FIX = (
    "in the vault (inventory/example/group_vars/all/vault.yml.example; "
    "generate one with: openssl rand -base64 36)"
)


def flaskfleet_secret_problems(values, host: str, redis_min_length=None) -> list[str]:
    """What is wrong with one host's cluster secrets (``values``: name -> value as the host
    sees it; unset = None or ""). Messages name the variable, never its value."""
    values = dict(values or {})
    problems: list[str] = []
    holders: dict[str, list[str]] = {}
    optional = {k: v for k, v in OPTIONAL_CLUSTER_SECRETS.items() if k in values}
    wanted = {**CLUSTER_SECRETS, **optional}
    for name, (minimum, who) in wanted.items():
        value = values.get(name)
        if value is None or str(value) == "":
            problems.append(f"{host}: {name} is not set. Define it {SECRET_FIX}.")
            continue
        value = str(value)
        if "redis" in name and redis_min_length not in (None, ""):
            # A value that is not a number: the role variable check names it.
            with contextlib.suppress(ValueError):
                minimum = _as_int(redis_min_length)
        minimum = max(minimum, SECRET_MIN_LENGTH_FLOOR)
        if PLACEHOLDER.search(value):
            problems.append(
                f"{host}: {name} is still a placeholder (it contains CHANGE-ME); "
                f"set a random value {SECRET_FIX}."
            )
        elif len(value) < minimum:
            problems.append(
                f"{host}: {name} has {len(value)} characters; {who} needs at least {minimum}. "
                f"Set a longer random value {SECRET_FIX}."
            )
        holders.setdefault(value, []).append(name)
    for names in holders.values():
        if len(names) > 1:
            problems.append(
                f"{host}: {' and '.join(names)} have the same value; give each secret its own "
                f"random value {SECRET_FIX}, so that one leaked secret opens one service."
            )
    return problems


# Names with a role's prefix that are not inputs of the role (its meta/argument_specs.yml)
# yet are not typos: flaskfleet settings and extra vars the playbooks read, and facts the
# roles publish for the playbooks. tests/test_topology.py checks this list against
# playbooks/, roles/ and the docs' "-e NAME=" examples.
ROLE_PREFIX_NAMES_NOT_IN_SPECS = frozenset(
    {
        "celery_beat",  # setting: celery_beat: true on one worker
        "app_release_src",  # extra var: deploy another checkout once
        "app_release_migrate_force",  # extra var: run the migrations again
        "app_release_rollback_to",  # set by rollback_app.yml for deploy_app.yml
        "broker_backup_file",  # extra var: restore_redis_broker.yml restores this copy
        "firewall_play_hosts",  # host pattern of playbooks/firewall.yml (restore_db.yml narrows it)
        # Facts set by the roles (set_fact) for the playbooks.
        "app_release_build",
        "app_release_changed",
        "app_release_current_version",
        "app_release_name",
        "app_release_previous_version",
        "app_release_staged_version",
        "gunicorn_pending_restarts",
        "postgresql_fenced_lsn",
        "pki_changed",
    }
)


def _role_specs(roles_dir: str, role: str) -> tuple[dict, set[str]]:
    """A role's ``main`` argument spec options (defaults removed) and every option name."""
    import yaml  # Ansible's own dependency

    path = f"{roles_dir}/{role}/meta/argument_specs.yml"
    try:
        with open(path, encoding="utf-8") as handle:
            entry_points = (yaml.safe_load(handle) or {}).get("argument_specs") or {}
    except FileNotFoundError:
        return {}, set()
    names = {n for ep in entry_points.values() for n in ((ep or {}).get("options") or {})}
    main = ((entry_points.get("main") or {}).get("options")) or {}
    return flaskfleet_spec_without_defaults(main), names


def _spec_summary(spec: dict) -> str:
    kind = spec.get("type", "str")
    if spec.get("elements"):
        kind = f"{kind} of {spec['elements']}"
    if spec.get("choices"):
        kind += " (one of: " + ", ".join(str(c) for c in spec["choices"]) + ")"
    description = spec.get("description") or ""
    if isinstance(description, list):
        description = " ".join(str(d) for d in description)
    return f"{kind}: {description}".strip().rstrip(":")


def flaskfleet_role_spec_names(roles, roles_dir: str) -> list[str]:
    """The variables the ``main`` entry points of ``roles`` take (their argument specs)."""
    return sorted({n for role in roles or [] for n in _role_specs(roles_dir, role)[0]})


def flaskfleet_role_variable_problems(values, host: str, roles, roles_dir: str, names=None):
    """One line per role variable of ``host`` that its role cannot use.

    ``names`` are the variables the host sees whose name starts with the prefix
    (``<role>_``) of a role in ``roles`` (the roles that run on the host), ``values`` their
    values (those of the names the specs define suffice; ``names`` defaults to its keys).
    A name the role does not define is a typo: the message suggests the nearest valid
    name. A value that does not fit the role's ``meta/argument_specs.yml`` (``main`` entry
    point) is named with what the role expects, never with the whole spec. Values of
    no_log options are not shown.
    """
    import difflib

    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    problems: list[str] = []
    values = dict(values or {})
    names = set(values) | {str(n) for n in names or []}
    for role in roles or []:
        main, known = _role_specs(roles_dir, role)
        if not known:
            continue
        known = known | {n for n in ROLE_PREFIX_NAMES_NOT_IN_SPECS if n.startswith(role + "_")}
        spec_file = f"roles/{role}/meta/argument_specs.yml"
        for name in sorted(n for n in names if n.startswith(role + "_")):
            if name not in known:
                # Compared without the prefix, which every candidate shares.
                cut = len(role) + 1
                close = difflib.get_close_matches(
                    name[cut:], sorted(k[cut:] for k in known), n=1, cutoff=0.6
                )
                hint = (
                    f"did you mean {role}_{close[0]}? Rename it" if close else "remove or rename it"
                )
                problems.append(
                    f"{host}: {name} is not a variable of the {role} role and would be ignored; "
                    f"{hint} (the role's variables: {spec_file})."
                )
                continue
            if name not in main or name not in values:
                continue
            result = ArgumentSpecValidator({name: main[name]}).validate(
                {name: values[name]}, validate_role_argument_spec=True
            )
            for error in result.error_messages:
                error = " ".join(str(error).split())
                if main[name].get("no_log"):
                    error = error.replace(str(values[name]), "********")
                problems.append(
                    f"{host}: {name} is not usable by the {role} role: {error}. Fix its value "
                    f"in the inventory; the role expects {_spec_summary(main[name])} ({spec_file})."
                )
    return problems


# The settings of the common role the SSH login check reads, and the connection plugins
# that log in over SSH.
SSH_LOGIN_SETTINGS = (
    "common_deploy_user",
    "common_deploy_user_authorized_keys",
    "common_deploy_user_exclusive_keys",
    "common_ssh_permit_root_login",
)
SSH_CONNECTIONS = frozenset(
    {
        "",
        "ssh",
        "smart",
        "paramiko",
        "paramiko_ssh",
        "ansible.builtin.ssh",
        "ansible.builtin.paramiko_ssh",
    }
)


def _key_blobs(text) -> set[str]:
    """The base64 key blobs of authorized_keys / .pub lines (options and comments ignored)."""
    blobs = set()
    for line in str(text or "").splitlines():
        for token in line.split():
            if token.startswith("AAAA"):
                blobs.add(token)
                break
    return blobs


def flaskfleet_ssh_login_problems(values, host: str, roles_dir: str) -> list[str]:
    """What in the common role's SSH settings would lock Ansible out of ``host`` after a run.

    ``values``: the host's ``ansible_connection``, ``ansible_user``, ``ansible_ssh_user``,
    ``ansible_ssh_private_key_file`` and ``SSH_LOGIN_SETTINGS`` as it sees them (unset: None
    or ""); a setting it leaves unset has the role's default (``defaults/main.yml``).

    - Ansible logs in as root over SSH while sshd is to refuse root logins.
    - The deploy user's keys are made exclusive, Ansible logs in as that user with a key
      file whose ``.pub`` is next to it, and the list does not hold that key.

    Who logs in is only known when ``ansible_user`` is set; a key only from its file.
    """
    import os

    import yaml  # Ansible's own dependency

    values = {k: v for k, v in dict(values or {}).items() if v is not None and v != ""}
    with open(f"{roles_dir}/common/defaults/main.yml", encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle) or {}
    settings = {name: values.get(name, defaults.get(name)) for name in SSH_LOGIN_SETTINGS}
    if str(values.get("ansible_connection", "")) not in SSH_CONNECTIONS:
        return []
    user = str(values.get("ansible_user", values.get("ansible_ssh_user", "")))
    problems = []
    if user == "root" and str(settings["common_ssh_permit_root_login"]) == "no":
        problems.append(
            f"{host}: Ansible logs in as root (ansible_user) and common_ssh_permit_root_login "
            "is no, so this run would lock its own login out. Log in as a user with sudo "
            f"(ansible_user: {settings['common_deploy_user']}, with your key in "
            "common_deploy_user_authorized_keys), or set common_ssh_permit_root_login: "
            "prohibit-password until you do."
        )
    keys = settings["common_deploy_user_authorized_keys"] or []
    key_file = str(values.get("ansible_ssh_private_key_file", ""))
    if (
        user
        and user == str(settings["common_deploy_user"])
        and _as_bool(settings["common_deploy_user_exclusive_keys"])
        and isinstance(keys, list)
        and keys
        and key_file
    ):
        public = os.path.expanduser(key_file) + ".pub"
        try:
            with open(public, encoding="utf-8") as handle:
                login_keys = _key_blobs(handle.read())
        except OSError:
            login_keys = set()
        listed = _key_blobs("\n".join(str(k) for k in keys))
        if login_keys and not login_keys & listed:
            problems.append(
                f"{host}: common_deploy_user_authorized_keys does not hold the key Ansible logs "
                f"in with ({public}), and common_deploy_user_exclusive_keys would remove it "
                f"from {user}'s authorized_keys: the next run could not log in. Add that "
                "public key to the list, or set common_deploy_user_exclusive_keys: false."
            )
    return problems


# The sandbox every service flaskfleet runs in: its own units (gunicorn, celery
# worker and beat) and the drop-ins over Debian's nginx and PostgreSQL units.
# Units add to it or override a directive (e.g. nginx's master runs as root and
# must switch to www-data: no PrivateUsers, a capability list); a list value
# repeats the directive. `systemd-analyze security` rates the result (<= 5.0 is
# asserted by the scenarios).
SYSTEMD_SANDBOX = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "DevicePolicy": "closed",
    "PrivateUsers": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RemoveIPC": "yes",
    "KeyringMode": "private",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    "SystemCallErrorNumber": "EPERM",
}


def flaskfleet_systemd_sandbox(extra=None) -> str:
    """The [Service] sandbox directives, one per line, with ``extra`` added or overriding."""
    directives = {**SYSTEMD_SANDBOX, **dict(extra or {})}
    lines = []
    for name, value in directives.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                item = "yes" if item else "no"
            lines.append(f"{name}={item}")
    return "\n".join(lines)


def flaskfleet_platform_problem(facts, role_path) -> str:
    """Why a host's platform is not one the role supports ("" when it is).

    The supported platforms are the role's own ``galaxy_info.platforms`` in
    ``meta/main.yml`` (e.g. Debian: [bookworm]), so adding a release is one line there.
    """
    import yaml  # Ansible's own dependency

    meta_file = f"{role_path}/meta/main.yml"
    with open(meta_file, encoding="utf-8") as handle:
        platforms = (yaml.safe_load(handle) or {}).get("galaxy_info", {}).get("platforms", [])
    facts = facts or {}
    name = str(facts.get("distribution", ""))
    release = str(facts.get("distribution_release", ""))
    supported = {p["name"]: [str(v) for v in p.get("versions", [])] for p in platforms}
    if name in supported and (release in supported[name] or "all" in supported[name]):
        return ""
    wanted = "; ".join(f"{n} {', '.join(v)}" for n, v in supported.items())
    role = str(role_path).rstrip("/").rsplit("/", 1)[-1]
    return (
        f"the {role} role supports {wanted}; this host runs {name} "
        f"{facts.get('distribution_version', '')} ({release or 'unknown release'})."
    )


def _redis_directives(text):
    """A redis.conf's directives as {name: value}; a name given twice maps to None."""
    directives: dict = {}
    for raw in str(text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        name = name.lower()
        directives[name] = None if name in directives else value.strip()
    return directives


def flaskfleet_redis_live_changes(old_text, new_text, live_names):
    """The [name, value] pairs that turn a running Redis from old_text's settings into
    new_text's with CONFIG SET, or None when that is not enough (a first install, or a
    changed directive Redis only reads at start, e.g. port, bind or requirepass)."""
    if not old_text:
        return None
    old, new = _redis_directives(old_text), _redis_directives(new_text)
    changes = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        if name not in live_names or new.get(name) is None:
            return None
        value = new[name]
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        changes.append([name, value])
    return changes


class FilterModule:
    def filters(self):
        return {
            "flaskfleet_is_ip": _is_ip,
            "flaskfleet_spec_without_defaults": flaskfleet_spec_without_defaults,
            "flaskfleet_address": flaskfleet_address,
            "flaskfleet_addresses": flaskfleet_addresses,
            "flaskfleet_slot_name": flaskfleet_slot_name,
            "flaskfleet_topology": flaskfleet_topology,
            "flaskfleet_scrape_targets": flaskfleet_scrape_targets,
            "flaskfleet_topology_problems": flaskfleet_topology_problems,
            "flaskfleet_deploy_serial_problems": flaskfleet_deploy_serial_problems,
            "flaskfleet_secret_problems": flaskfleet_secret_problems,
            "flaskfleet_role_variable_problems": flaskfleet_role_variable_problems,
            "flaskfleet_role_spec_names": flaskfleet_role_spec_names,
            "flaskfleet_role_hosts": flaskfleet_role_hosts,
            "flaskfleet_ssh_login_problems": flaskfleet_ssh_login_problems,
            "flaskfleet_systemd_sandbox": flaskfleet_systemd_sandbox,
            "flaskfleet_redis_live_changes": flaskfleet_redis_live_changes,
            "flaskfleet_platform_problem": flaskfleet_platform_problem,
            "flaskfleet_postgres_url": flaskfleet_postgres_url,
            "flaskfleet_postgres_multihost_url": flaskfleet_postgres_multihost_url,
            "flaskfleet_redis_url": flaskfleet_redis_url,
            "flaskfleet_firewall_rules": flaskfleet_firewall_rules,
            "flaskfleet_nft_sources": flaskfleet_nft_sources,
            "flaskfleet_firewall_problems": flaskfleet_firewall_problems,
        }
