"""Helpers shared by the testinfra suites of every scenario (molecule/pytest.ini puts this
directory on sys.path): hosts from the scenario's inventory, bounded polls, journals."""

import os
import time

import testinfra
import testinfra.utils.ansible_runner


def inventory():
    """The scenario's inventory, as molecule wrote it."""
    return os.environ["MOLECULE_INVENTORY_FILE"]


def remote(name):
    """A testinfra host reached through Ansible with the scenario's inventory."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory())


def hosts_in(group):
    """Inventory hosts of a group, as Ansible resolves them."""
    return sorted(testinfra.utils.ansible_runner.AnsibleRunner(inventory()).get_hosts(group))


def wait_for(predicate, timeout, what, interval=0.5, diagnose=None):
    """Poll predicate() until it returns something truthy and return that, or fail after
    timeout seconds, naming what was awaited (with diagnose(), e.g. a journal)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{diagnose()}" if diagnose else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def journal(host, unit, lines=60):
    """The tail of a unit's journal, for failure messages."""
    return host.run(f"journalctl -u {unit} -n {lines} --no-pager").stdout


def exposure(host, unit):
    """`systemd-analyze security` overall exposure of a unit (0 = locked down, 10 = unsafe)."""
    import re

    out = host.run(f"systemd-analyze security --no-pager {unit}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    return float(match.group(1))


def main_process_status(host, unit):
    """/proc/<MainPID>/status of a running unit as a dict: proves the running process (not
    only the unit file) is sandboxed, e.g. NoNewPrivs 1, Seccomp 2, CapBnd."""
    pid = host.run(f"systemctl show -P MainPID {unit}").stdout.strip()
    assert pid not in ("", "0"), f"{unit} has no main process"
    lines = host.file(f"/proc/{pid}/status").content_string.splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def tcp_probe(host, address, port, timeout=3):
    """Open a TCP connection from ``host`` to address:port: "open", "refused" (nothing
    listens, or a reject) or "dropped" (no answer within timeout: a firewall's drop)."""
    out = host.run(f"timeout {timeout} bash -c 'exec 3<>/dev/tcp/{address}/{port}'")
    return {0: "open", 124: "dropped"}.get(out.rc, "refused")
