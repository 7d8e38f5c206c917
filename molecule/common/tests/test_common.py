"""The baseline every flaskfleet host relies on."""

import json
from pathlib import Path

import pytest
import yaml

DEPLOY_USER = "deploy"
# The role's defaults: what a host that does not override them must run with.
DEFAULTS = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "roles/common/defaults/main.yml").read_text()
)
STALE_KEY = "stale@flaskfleet"  # planted by prepare.yml, listed nowhere


def setting(host, name):
    """A role variable as the host sees it: the inventory's value, else the role default."""
    return host.ansible.get_variables().get(name, DEFAULTS[name])


def test_deploy_user_has_passwordless_sudo(host):
    user = host.user(DEPLOY_USER)
    assert user.exists
    assert "sudo" in user.groups
    # Run a real sudo as the deploy user, non-interactively (-n fails if a password is asked).
    out = host.run(f"runuser -u {DEPLOY_USER} -- sudo -n id -u")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_deploy_user_key_is_authorized(host):
    keys = host.file(f"/home/{DEPLOY_USER}/.ssh/authorized_keys")
    assert keys.user == DEPLOY_USER
    assert keys.mode == 0o600
    assert "molecule@flaskfleet" in keys.content_string


def test_deploy_user_keys_are_exclusive_unless_turned_off(host):
    # The listed key only (default), or the listed key added to what was there.
    lines = host.file(f"/home/{DEPLOY_USER}/.ssh/authorized_keys").content_string.splitlines()
    comments = sorted(line.split()[-1] for line in lines if line.strip())
    if setting(host, "common_deploy_user_exclusive_keys"):
        assert comments == ["molecule@flaskfleet"], lines
    else:
        assert comments == ["molecule@flaskfleet", STALE_KEY], lines


def sshd_effective(host):
    """`sshd -T`: the settings sshd runs with, {keyword: value} (keywords lowercased)."""
    out = host.run("sshd -T")
    assert out.rc == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


def test_sshd_baseline(host):
    sshd = sshd_effective(host)
    assert sshd["permitrootlogin"] == "no"
    assert sshd["maxauthtries"] == str(DEFAULTS["common_ssh_max_auth_tries"]) == "3"
    assert sshd["logingracetime"] == str(DEFAULTS["common_ssh_login_grace_time"])
    assert sshd["clientaliveinterval"] == str(DEFAULTS["common_ssh_client_alive_interval"])
    assert sshd["clientalivecountmax"] == str(DEFAULTS["common_ssh_client_alive_count_max"])
    assert sshd["loglevel"] == "VERBOSE"
    for keyword in (
        "allowtcpforwarding",
        "allowstreamlocalforwarding",
        "allowagentforwarding",
        "permittunnel",
        "gatewayports",
        "x11forwarding",
        "hostbasedauthentication",
        "permituserenvironment",
    ):
        assert sshd[keyword] == "no", (keyword, sshd[keyword])


@pytest.mark.parametrize(
    ("keyword", "variable"),
    [
        ("kexalgorithms", "common_ssh_kex_algorithms"),
        ("ciphers", "common_ssh_ciphers"),
        ("macs", "common_ssh_macs"),
        ("hostkeyalgorithms", "common_ssh_host_key_algorithms"),
    ],
)
def test_sshd_offers_only_modern_algorithms(host, keyword, variable):
    offered = sshd_effective(host)[keyword].split(",")
    assert offered == DEFAULTS[variable]
    weak = [a for a in offered if "sha1" in a or "cbc" in a or "md5" in a or a == "ssh-rsa"]
    assert not weak, weak


@pytest.mark.parametrize(
    ("option", "refusal"),
    [
        ("Ciphers=aes128-cbc", "no matching cipher found"),
        ("KexAlgorithms=diffie-hellman-group14-sha1", "no matching key exchange method found"),
        ("MACs=hmac-sha1 -o Ciphers=aes128-ctr", "no matching MAC found"),
        ("HostKeyAlgorithms=ssh-rsa", "no matching host key type found"),
    ],
)
def test_the_running_sshd_was_reloaded_not_restarted(host, option, refusal):
    # A client asking only for an algorithm the baseline dropped (Debian's sshd offers them
    # all) is refused by the daemon that runs now...
    attempt = host.run(
        f"ssh -o {option} -o BatchMode=yes -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 %s@127.0.0.1 true",
        DEPLOY_USER,
    )
    assert attempt.rc == 255
    assert refusal in attempt.stderr, attempt.stderr
    # ...which was started before the role wrote its configuration: it was reloaded.
    pid = host.run("systemctl show -P MainPID ssh").stdout.strip()
    # Seconds since the epoch now, and since sshd started (ps etimes), on the host's clock.
    now, running_for = host.run("date +%%s; ps -o etimes= -p %s", pid).stdout.split()
    written = host.file("/etc/ssh/sshd_config.d/10-flaskfleet.conf").mtime.timestamp()
    assert int(now) - int(running_for) < written, (now, running_for, written)


def test_sshd_refuses_password_login(host):
    effective = host.run("sshd -T")
    assert effective.rc == 0, effective.stderr
    assert "passwordauthentication no" in effective.stdout
    assert "kbdinteractiveauthentication no" in effective.stdout
    # A real login attempt that offers no key: the server must not offer a
    # password method at all.
    attempt = host.run(
        "ssh -o BatchMode=yes -o PubkeyAuthentication=no -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 %s@127.0.0.1 true",
        DEPLOY_USER,
    )
    assert attempt.rc == 255
    assert "Permission denied (publickey)" in attempt.stderr


def test_time_sync_matches_the_platform(host):
    virt = host.run("systemd-detect-virt --container").stdout.strip()
    timesyncd = host.service("systemd-timesyncd")
    if virt and virt != "none":
        # In a container the host kernel owns the clock: the role must not
        # pretend to sync it.
        assert not timesyncd.is_running
    else:
        assert timesyncd.is_running
        assert timesyncd.is_enabled


# The zone and journal size the base image has (Etc/UTC; journald's default of 10% of the
# file system, far above a few hundred MB on any disk a CI runner has).
IMAGE_TIMEZONE = "Etc/UTC"
JOURNAL_USAGE_MESSAGE = "ec387f577b844b8fa948f33cad9a75e6"  # SD_MESSAGE_JOURNAL_USAGE


def to_bytes(size):
    """journald.conf size ("48M") in bytes (its suffixes are powers of 1024)."""
    units = {"K": 1, "M": 2, "G": 3, "T": 4}
    size = str(size).strip().upper()
    if size[-1] in units:
        return int(float(size[:-1]) * 1024 ** units[size[-1]])
    return int(size)


def test_apt_does_not_install_recommends(host):
    # A real (simulated) install of a package with recommends the host does not have:
    # apt lists them as recommended but plans no install for them.
    assert not host.package("patch").is_installed, "the probe needs git's recommend missing"
    plan = host.run("apt-get -s install git")
    assert plan.rc == 0, plan.stderr
    assert "Inst git " in plan.stdout
    assert "Recommended packages:" in plan.stdout
    assert not any(line.startswith("Inst patch ") for line in plan.stdout.splitlines()), plan.stdout


def test_journald_applies_its_limit(host):
    # The running journald (the process after the role's restart) reports the limit it
    # enforces on the persistent journal when it opens it.
    wanted = host.ansible.get_variables()["common_journald_system_max_use"]
    assert to_bytes(wanted) < to_bytes("1G"), "pick a limit journald would not choose itself"
    pid = host.service("systemd-journald").systemd_properties["MainPID"]
    out = host.run(
        f"journalctl -b -o json --no-pager MESSAGE_ID={JOURNAL_USAGE_MESSAGE} _PID={pid}"
    )
    assert out.rc == 0, out.stderr
    reports = [json.loads(line) for line in out.stdout.splitlines()]
    system = [r for r in reports if r.get("JOURNAL_NAME") == "System Journal"]
    assert system, f"journald {pid} reported no system journal usage: {out.stdout}"
    assert int(system[-1]["MAX_USE"]) == to_bytes(wanted), system[-1]["MESSAGE"]


def test_timezone(host):
    wanted = host.ansible.get_variables()["common_timezone"]
    assert wanted != IMAGE_TIMEZONE, "the scenario must set a zone the image does not have"
    # What systemd reports, and the offset a new process gets from /etc/localtime (no TZ)
    # against the zone's own offset from the tz database.
    assert host.run("timedatectl show -p Timezone --value").stdout.strip() == wanted
    local = host.run("env -u TZ date +%z").stdout.strip()
    expected = host.run(
        "python3 -c %s %s",
        "import datetime, sys, zoneinfo; "
        "print(datetime.datetime.now(zoneinfo.ZoneInfo(sys.argv[1])).strftime('%z'))",
        wanted,
    )
    assert local == expected.stdout.strip() != "+0000", (local, expected.stdout, expected.stderr)
    assert host.file("/etc/timezone").content_string.strip() == wanted


def apt_config(host, *names):
    """`apt-config dump` of these names: {key: [values]} (lists have one key per item)."""
    out = host.run("apt-config dump " + " ".join(names))
    assert out.rc == 0, out.stderr
    values = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key.rstrip(":"), []).append(value.rstrip(";").strip('"'))
    return values


def test_unattended_upgrades_follow_the_switch(host):
    on = setting(host, "common_unattended_upgrades")
    periodic = apt_config(host, "APT::Periodic")
    for key in ("APT::Periodic::Update-Package-Lists", "APT::Periodic::Unattended-Upgrade"):
        assert periodic[key] == ["1" if on else "0"], periodic
    assert host.package("unattended-upgrades").is_installed == on
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert host.service(timer).is_enabled == on, timer
        assert host.service(timer).is_running == on, timer


def test_unattended_upgrades_take_security_updates_only_and_never_reboot(host):
    config = apt_config(host, "Unattended-Upgrade")
    origins = [o for o in config["Unattended-Upgrade::Origins-Pattern"] if o]
    assert origins == DEFAULTS["common_unattended_upgrades_origins"]
    assert all("label=Debian-Security" in o for o in origins), origins
    assert config["Unattended-Upgrade::Automatic-Reboot"] == ["false"]
    if not setting(host, "common_unattended_upgrades"):
        return
    # What unattended-upgrade itself makes of the configuration (a dry run installs nothing).
    run = host.run("unattended-upgrade --dry-run --debug 2>&1")
    assert run.rc == 0, run.stdout[-3000:]
    allowed = [line for line in run.stdout.splitlines() if line.startswith("Allowed origins are:")]
    assert allowed == [
        "Allowed origins are: origin=Debian,codename=bookworm-security,label=Debian-Security, "
        "origin=Debian,codename=bookworm,label=Debian-Security"
    ], run.stdout[:3000]
