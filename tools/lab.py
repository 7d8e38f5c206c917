#!/usr/bin/env python3
"""The local lab: Debian 12 systemd containers that stand in for VMs.

``lab.py up`` creates one container per host of ``inventory/lab/`` on the
project's own Docker network, with the container profile of
``molecule/_shared/container_profile.yml``, publishes each host's SSH port on
127.0.0.1 and creates the unprivileged ``deploy`` user with a lab key (what
cloud-init does on a real VM). It records each host's SSH host keys in
``.lab/known_hosts`` (as ``[127.0.0.1]:PORT``), read inside the container through
``docker exec``: the lab's trusted channel, as a provider's console is for a VM, so
no key is learnt on first connection. Ansible then reaches the hosts exactly as it
reaches VMs: over SSH, as ``deploy``, with sudo, checking host keys.

``lab.py down`` removes the containers and the network (the image stays) and their
host keys from ``.lab/known_hosts``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = ROOT / ".lab"
KEY = LAB_DIR / "id_ed25519"
# Named by the lab inventory's ansible_ssh_common_args (UserKnownHostsFile).
KNOWN_HOSTS = LAB_DIR / "known_hosts"
PROFILE = ROOT / "molecule" / "_shared" / "container_profile.yml"
INVENTORY_DIR = ROOT / "inventory" / "lab"
NETWORK = "flaskfleet-lab"
SUBNET = "172.28.0.0/24"
PREFIX = "ff-lab-"
DEPLOY_USER = "deploy"


def run(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, text=True, capture_output=capture)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("docker", *args, check=check)


def lab_hosts() -> dict[str, dict]:
    """Every host defined in the lab inventory files, with its host vars."""
    hosts: dict[str, dict] = {}

    def walk(group: dict) -> None:
        for name, hvars in (group.get("hosts") or {}).items():
            hosts.setdefault(name, {}).update(hvars or {})
        for child in (group.get("children") or {}).values():
            walk(child or {})

    for path in sorted(INVENTORY_DIR.glob("*.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        for group in data.values():
            walk(group or {})
    for name, hvars in hosts.items():
        for key in ("ansible_port", "private_ip"):
            if key not in hvars:
                sys.exit(
                    f"lab: host {name} in {INVENTORY_DIR} needs {key} (lab hosts are containers)"
                )
    return hosts


def ensure_key() -> str:
    LAB_DIR.mkdir(exist_ok=True)
    if not KEY.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flaskfleet-lab", "-f", str(KEY))
    return (KEY.with_suffix(".pub")).read_text().strip()


def ensure_network() -> None:
    if docker("network", "inspect", NETWORK, check=False).returncode != 0:
        docker("network", "create", "--subnet", SUBNET, "--label", "flaskfleet=lab", NETWORK)


def container_exists(name: str) -> bool:
    return docker("container", "inspect", name, check=False).returncode == 0


def create_container(name: str, hvars: dict, profile: dict) -> None:
    cname = PREFIX + name
    if container_exists(cname):
        state = json.loads(docker("container", "inspect", cname).stdout)[0]["State"]
        if not state["Running"]:
            docker("start", cname)
        return
    args = ["run", "-d", "--name", cname, "--hostname", name, "--label", "flaskfleet=lab"]
    for cap in profile["flaskfleet_container_capabilities"]:
        args += ["--cap-add", cap]
    for opt in profile["flaskfleet_container_security_opts"]:
        args += ["--security-opt", opt]
    args += ["--cgroupns", profile["flaskfleet_container_cgroupns_mode"]]
    for vol in profile["flaskfleet_container_volumes"]:
        args += ["-v", vol]
    for tmp in profile["flaskfleet_container_tmpfs"]:
        args += ["--tmpfs", tmp]
    args += ["--stop-signal", profile["flaskfleet_container_stop_signal"]]
    args += ["--network", NETWORK, "--ip", str(hvars["private_ip"])]
    args += ["-p", f"127.0.0.1:{int(hvars['ansible_port'])}:22"]
    for spec in hvars.get("lab_publish", []) or []:
        args += ["-p", spec]
    args += [profile["flaskfleet_container_image"], profile["flaskfleet_container_command"]]
    docker(*args)
    print(f"lab: created {cname} ({hvars['private_ip']}, ssh 127.0.0.1:{hvars['ansible_port']})")


def bootstrap(name: str, pubkey: str) -> None:
    """Create the deploy user with the lab key: what cloud-init does on a VM."""
    cname = PREFIX + name
    for _ in range(60):
        out = docker("exec", cname, "systemctl", "is-system-running", check=False).stdout.strip()
        if out in ("running", "degraded"):
            break
        time.sleep(1)
    else:
        sys.exit(f"lab: {cname} did not finish booting")
    script = f"""
set -e
id -u {DEPLOY_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo {DEPLOY_USER}
install -d -m 0700 -o {DEPLOY_USER} -g {DEPLOY_USER} /home/{DEPLOY_USER}/.ssh
grep -qxF '{pubkey}' /home/{DEPLOY_USER}/.ssh/authorized_keys 2>/dev/null || \
  echo '{pubkey}' >> /home/{DEPLOY_USER}/.ssh/authorized_keys
chown {DEPLOY_USER}:{DEPLOY_USER} /home/{DEPLOY_USER}/.ssh/authorized_keys
chmod 0600 /home/{DEPLOY_USER}/.ssh/authorized_keys
echo '{DEPLOY_USER} ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/{DEPLOY_USER}
chmod 0440 /etc/sudoers.d/{DEPLOY_USER}
systemctl is-active --quiet ssh || systemctl start ssh
"""
    docker("exec", cname, "sh", "-c", script)


def known_host(port) -> str:
    """The known_hosts name of a lab host: ssh's form for a port other than 22."""
    return f"[127.0.0.1]:{int(port)}"


def host_keys(name: str) -> list[str]:
    """The host's public SSH host keys ("TYPE BASE64"), read inside the container.

    ``docker exec`` is the trusted channel (a VM's is its provider console or cloud-init's
    printed fingerprints): nothing here comes over the network the keys are to protect.
    The image creates the keys at first boot (ssh-hostkeys.service, before ssh.service).
    """
    cname = PREFIX + name
    out = docker("exec", cname, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub", check=False)
    keys = [" ".join(line.split()[:2]) for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not keys:
        sys.exit(f"lab: cannot read the SSH host keys of {cname}: {out.stderr.strip()}")
    return keys


def write_known_hosts(keys: dict[str, list[str]]) -> None:
    """Set the host keys of these known_hosts names (empty list: remove the name)."""
    lines = KNOWN_HOSTS.read_text().splitlines() if KNOWN_HOSTS.exists() else []
    kept = [line for line in lines if line.split(" ", 1)[0] not in keys]
    kept += [f"{host} {key}" for host, entries in keys.items() for key in entries]
    if not kept:
        KNOWN_HOSTS.unlink(missing_ok=True)
        return
    LAB_DIR.mkdir(exist_ok=True)
    tmp = KNOWN_HOSTS.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(KNOWN_HOSTS)


def wait_ssh(name: str, hvars: dict) -> None:
    """Log in as Ansible will: the lab key, host key checked against .lab/known_hosts."""
    for _ in range(30):
        res = run(
            "ssh",
            "-i",
            str(KEY),
            "-p",
            str(hvars["ansible_port"]),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={KNOWN_HOSTS}",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
            f"{DEPLOY_USER}@127.0.0.1",
            "sudo",
            "-n",
            "true",
            check=False,
        )
        if res.returncode == 0:
            return
        time.sleep(1)
    sys.exit(
        f"lab: cannot ssh to {name} on 127.0.0.1:{hvars['ansible_port']}: {res.stderr.strip()}"
    )


def cmd_up(args: argparse.Namespace) -> None:
    profile = yaml.safe_load(PROFILE.read_text())
    if docker("image", "inspect", profile["flaskfleet_container_image"], check=False).returncode:
        sys.exit("lab: the base image is missing; run `make image` first")
    hosts = lab_hosts()
    wanted = args.hosts or list(hosts)
    pubkey = ensure_key()
    ensure_network()
    for name in wanted:
        create_container(name, hosts[name], profile)
    for name in wanted:
        bootstrap(name, pubkey)
    write_known_hosts({known_host(hosts[n]["ansible_port"]): host_keys(n) for n in wanted})
    for name in wanted:
        wait_ssh(name, hosts[name])
    print(
        f"lab: {len(wanted)} host(s) answer over SSH as {DEPLOY_USER}; "
        f"host keys in {KNOWN_HOSTS.relative_to(ROOT)}"
    )


def cmd_down(args: argparse.Namespace) -> None:
    names = docker(
        "ps", "-a", "--filter", "label=flaskfleet=lab", "--format", "{{.Names}}"
    ).stdout.split()
    if args.hosts:
        names = [PREFIX + h for h in args.hosts if PREFIX + h in names]
    # Their host keys go too; the port comes from Docker (scale-in drops app3 from the
    # inventory before it removes the container).
    ports = [docker("port", n, "22/tcp", check=False).stdout.split() for n in names]
    if names:
        docker("rm", "-f", *names)
        print(f"lab: removed {' '.join(names)}")
    if not args.hosts:
        KNOWN_HOSTS.unlink(missing_ok=True)
    else:
        write_known_hosts({known_host(p[0].rsplit(":", 1)[1]): [] for p in ports if p})
    if not args.hosts and docker("network", "inspect", NETWORK, check=False).returncode == 0:
        docker("network", "rm", NETWORK)


def cmd_hosts(_: argparse.Namespace) -> None:
    for name, hvars in lab_hosts().items():
        print(name, hvars["private_ip"], hvars["ansible_port"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, fn in (("up", cmd_up), ("down", cmd_down), ("hosts", cmd_hosts)):
        p = sub.add_parser(name)
        p.add_argument("hosts", nargs="*", help="only these inventory hosts (default: all)")
        p.set_defaults(fn=fn)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
