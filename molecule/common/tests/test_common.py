"""The baseline every flaskfleet host relies on."""

import json

DEPLOY_USER = "deploy"


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
