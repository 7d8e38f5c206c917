"""The central journal (roles/central_journal): the Redis host's journal reaches the
monitoring host (the backup host in this scenario) over HTTPS from the private CA, and what
was written while the receiver was down arrives once it is back."""

import time
import uuid

from fftest import journal, remote, tcp_probe, wait_for

RECEIVER = "172.28.3.12"
REMOTE_DIR = "/var/log/journal/remote"


def found(receiver, tag, text):
    out = receiver.run(f"journalctl --directory={REMOTE_DIR} -t {tag} --no-pager -o cat")
    return text in out.stdout


def test_a_line_written_on_the_redis_host_is_read_on_the_monitoring_host():
    sender, receiver = remote("ff-redis-1"), remote("ff-redis-backup")
    text = f"central journal {uuid.uuid4()}"
    sender.check_output(f"logger -t fftest '{text}'")
    wait_for(lambda: found(receiver, "fftest", text), 60, f"'{text}' in {REMOTE_DIR}")
    # One journal file per sending host; the units of every host are read the same way.
    assert receiver.run(
        f"journalctl --directory={REMOTE_DIR} -u redis-server@broker --no-pager -o cat"
    ).stdout.strip()


def test_the_receiver_listens_on_the_private_address_over_tls_only():
    receiver = remote("ff-redis-backup")
    assert receiver.socket(f"tcp://{RECEIVER}:19532").is_listening
    assert not receiver.socket("tcp://0.0.0.0:19532").is_listening
    sender = remote("ff-redis-1")
    # The receiver's certificate verifies against the private CA for its address ...
    ok = sender.run(
        "curl -sS -o /dev/null -w '%{http_code}' "
        "--cacert /etc/flaskfleet/tls-journal-upload/ca.crt "
        f"https://{RECEIVER}:19532/"
    )
    assert ok.rc == 0, ok.stderr
    # ... and plain HTTP is not spoken.
    assert sender.run(f"curl -sS -m 5 http://{RECEIVER}:19532/").rc != 0


def test_the_firewall_opens_the_receiver_to_the_managed_hosts():
    assert tcp_probe(remote("ff-redis-1"), RECEIVER, 19532) == "open"
    rules = remote("ff-redis-backup").check_output("nft list chain inet flaskfleet input")
    assert "19532" in rules and "172.28.3.11" in rules


def test_what_is_written_while_the_receiver_is_down_arrives_when_it_is_back():
    sender, receiver = remote("ff-redis-1"), remote("ff-redis-backup")
    receiver.check_output("systemctl stop systemd-journal-remote.socket systemd-journal-remote")
    try:
        text = f"written during the outage {uuid.uuid4()}"
        sender.check_output(f"logger -t fftest '{text}'")
        # The uploader fails while the receiver is away and keeps retrying (Debian's unit
        # alone would give up after five quick failures).
        time.sleep(20)
        assert sender.check_output("systemctl show -P ActiveState systemd-journal-upload") in (
            "active",
            "activating",
        )
    finally:
        receiver.check_output("systemctl start systemd-journal-remote.socket")
    wait_for(lambda: found(receiver, "fftest", text), 90, f"'{text}' after the outage")


def _in_flight(sender):
    """The uploader's connection to the receiver with bytes it cannot get acknowledged."""
    for line in sender.check_output(f"ss -tnH dst {RECEIVER} dport = 19532").splitlines():
        fields = line.split()
        if fields[0] == "SYN-SENT" or (fields[0] == "ESTAB" and int(fields[2]) > 0):
            return line
    return None


def test_a_restart_while_the_receiver_drops_packets_is_not_held_and_loses_nothing():
    """A receiver behind a firewall that drops packets holds the uploader inside a transfer,
    where it does not read SIGTERM: the unit's stop timeout (10 s, not systemd's 90 s) bounds
    every restart, and the killed uploader resumes from its cursor."""
    sender, receiver = remote("ff-redis-1"), remote("ff-redis-backup")
    receiver.check_output(
        "nft insert rule inet flaskfleet input tcp dport 19532 drop comment fftest-blackhole"
    )
    try:
        text = f"written behind a black hole {uuid.uuid4()}"
        sender.check_output(f"logger -t fftest '{text}'")
        # Only a restart that meets an upload in flight proves the bound.
        wait_for(lambda: _in_flight(sender), 60, "an upload stuck in flight", interval=1)
        started = time.monotonic()
        sender.check_output("systemctl restart systemd-journal-upload")
        took = time.monotonic() - started
        print(f"restart of the stuck uploader took {took:.1f} s")
        assert took < 45, journal(sender, "systemd-journal-upload", 10)
        assert sender.check_output("systemctl show -P ActiveState systemd-journal-upload") in (
            "active",
            "activating",
        )
    finally:
        handles = receiver.check_output(
            "nft -a list chain inet flaskfleet input | "
            "sed -n 's/.*fftest-blackhole.* handle \\([0-9]*\\).*/\\1/p'"
        ).split()
        for handle in handles:
            receiver.check_output(f"nft delete rule inet flaskfleet input handle {handle}")
    wait_for(lambda: found(receiver, "fftest", text), 90, f"'{text}' after the black hole")


def test_the_remote_journals_are_trimmed_on_a_schedule():
    receiver = remote("ff-redis-backup")
    assert receiver.service("flaskfleet-journal-vacuum.timer").is_enabled
    assert receiver.check_output(
        "systemctl show -P ActiveState flaskfleet-journal-vacuum.timer"
    ) == ("active")
    # One run now: it trims the remote journals (and only those) to the configured bounds.
    receiver.check_output("systemctl start flaskfleet-journal-vacuum.service")
    result = receiver.check_output("systemctl show -P Result flaskfleet-journal-vacuum.service")
    assert result == "success"
    log = receiver.check_output(
        "journalctl -u flaskfleet-journal-vacuum.service --no-pager -o cat -n 20"
    )
    assert f"from {REMOTE_DIR}" in log, log
