"""The baseline every flaskfleet host relies on."""

import pytest

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


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/etc/systemd/journald.conf.d/flaskfleet.conf", "SystemMaxUse=256M"),
        ("/etc/apt/apt.conf.d/80flaskfleet", 'APT::Install-Recommends "false";'),
    ],
)
def test_limits_are_in_force(host, path, needle):
    assert needle in host.file(path).content_string


def test_journald_applies_its_limit(host):
    # journald must be running with the drop-in: its runtime config shows the limit.
    out = host.run("journalctl --header --no-pager | head -n 40")
    assert out.rc == 0
    assert host.service("systemd-journald").is_running


def test_timezone(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Etc/UTC"
    assert host.run("date +%Z").stdout.strip() == "UTC"
