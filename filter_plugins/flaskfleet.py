"""Peer wiring for flaskfleet: how hosts find each other, computed from the inventory.

Roles never read ``groups[...]``; the tier playbooks use these filters (through
``playbooks/vars/wiring.yml``) to turn group membership into role variables.
Every filter works with ``--limit``: a host's address comes from ``private_ip``
in the inventory first, then from gathered facts, then from ``ansible_host``
when it is an IP address; a host with none of them is an error that names the fix.
"""

from __future__ import annotations

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


def flaskfleet_upstream(hosts, hostvars, default_instances: int = 2, base_port: int = 8001):
    """One upstream server per gunicorn instance of every app server.

    Each item: ``{"host", "address", "port", "down", "weight"}``. A host's
    instance count comes from its own ``gunicorn_instances`` (or the default),
    ``flaskfleet_drain: true`` marks all its instances ``down``.
    """
    servers = []
    for host in hosts or []:
        hv = hostvars[host] if host in hostvars else {}  # noqa: SIM401 - HostVars has no .get()  # noqa: SIM401 - HostVars has no .get()
        count = int(hv.get("gunicorn_instances", default_instances))
        port0 = int(hv.get("gunicorn_base_port", base_port))
        if count < 1:
            raise AnsibleFilterError(f"{host}: gunicorn_instances must be >= 1, got {count}.")
        address = flaskfleet_address(host, hostvars)
        for i in range(count):
            servers.append(
                {
                    "host": host,
                    "address": address,
                    "port": port0 + i,
                    "down": bool(hv.get("flaskfleet_drain", False)),
                    "weight": int(hv.get("nginx_upstream_weight", 1)),
                }
            )
    return servers


def flaskfleet_postgres_url(
    address: str, user: str, password: str, dbname: str, port: int = 5432
) -> str:
    """A SQLAlchemy URL (psycopg 3 driver) with credentials quoted."""
    return (
        f"postgresql+psycopg://{quote(str(user), safe='')}:{quote(str(password), safe='')}"
        f"@{address}:{int(port)}/{quote(str(dbname), safe='')}"
    )


def flaskfleet_redis_url(address: str, password: str, port: int, db: int = 0) -> str:
    """A redis:// URL with the password quoted."""
    return f"redis://:{quote(str(password), safe='')}@{address}:{int(port)}/{int(db)}"


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


class FilterModule:
    def filters(self):
        return {
            "flaskfleet_is_ip": _is_ip,
            "flaskfleet_spec_without_defaults": flaskfleet_spec_without_defaults,
            "flaskfleet_address": flaskfleet_address,
            "flaskfleet_addresses": flaskfleet_addresses,
            "flaskfleet_slot_name": flaskfleet_slot_name,
            "flaskfleet_upstream": flaskfleet_upstream,
            "flaskfleet_postgres_url": flaskfleet_postgres_url,
            "flaskfleet_redis_url": flaskfleet_redis_url,
        }
