"""The load balancer's upstream as data: what upstream.conf is rendered from.

The role keeps this document next to the configuration
(``/etc/nginx/flaskfleet/upstream.json``). A full run of the role writes it
from the role variables: every server in service unless its item says
``down``. The ``upstream`` entry point (rolling restarts, scale in) changes
only the drain state of the hosts it names and keeps the load balancer's own
settings, since it runs delegated from a play on the app servers, where the
load balancer's variables are not in scope.
"""

from __future__ import annotations

SETTINGS = (
    "name",
    "algorithm",
    "hash_key",
    "max_fails",
    "fail_timeout",
    "keepalive",
    "keepalive_timeout",
)


def nginx_upstream_document(servers, settings: dict) -> dict:
    """The document of a full run: every server in service unless forced down."""
    return {
        "settings": {k: settings[k] for k in SETTINGS},
        "servers": [_server(s, drained=False) for s in servers or []],
    }


def nginx_upstream_update(previous: dict, servers, drain=(), undrain=()) -> dict:
    """The document after a drain change, from the one in service.

    Names in ``drain`` are taken out of service, names in ``undrain`` put
    (back) in: a host (every server of it) or ``host:port`` (that one server,
    e.g. one gunicorn instance while it restarts); every other server keeps
    its state. Servers that left ``servers`` go; a new port of a known host
    takes the host's state, a new host joins drained (nothing has checked it).
    """
    drain, undrain = set(drain or []), set(undrain or [])
    before = {
        (s["host"], int(s["port"])): bool(s.get("drained")) for s in previous.get("servers", [])
    }
    host_before = {host: drained for (host, _), drained in before.items()}
    updated = []
    for item in servers or []:
        host, names = item["host"], {item["host"], f"{item['host']}:{int(item['port'])}"}
        if names & drain:
            drained = True
        elif names & undrain:
            drained = False
        else:
            drained = before.get((host, int(item["port"])), host_before.get(host, True))
        updated.append(_server(item, drained))
    return {"settings": dict(previous["settings"]), "servers": updated}


def nginx_upstream_drained_hosts(document: dict) -> list[str]:
    """Hosts with at least one server out of service, in order."""
    hosts: list[str] = []
    for s in document.get("servers", []):
        if (s["down"] or s["drained"]) and s["host"] not in hosts:
            hosts.append(s["host"])
    return hosts


def _server(item: dict, drained: bool) -> dict:
    return {
        "host": str(item["host"]),
        "address": str(item["address"]),
        "port": int(item["port"]),
        "weight": int(item.get("weight", 1)),
        # `down` comes from the inventory (flaskfleet_drain); `drained` from rolls.
        "down": bool(item.get("down", False)),
        "drained": bool(drained),
    }


class FilterModule:
    def filters(self):
        return {
            "nginx_upstream_document": nginx_upstream_document,
            "nginx_upstream_update": nginx_upstream_update,
            "nginx_upstream_drained_hosts": nginx_upstream_drained_hosts,
        }
