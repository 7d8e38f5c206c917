"""playbooks/promote_replica.yml checks the request before it touches a host.

The real playbook runs against a small inventory whose hosts cannot be reached
(SSH to a closed port on 127.0.0.1): the request check runs on the controller,
and a valid request then stops at "the new primary does not answer" with
nothing changed.
"""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = """
all:
  vars:
    ansible_host: 127.0.0.1
    ansible_port: 1
    ansible_ssh_common_args: -o ConnectTimeout=2
    flaskfleet_db_password: aaaaaaaaaaaaaaaa
    flaskfleet_db_name: app
    flaskfleet_db_user: app
    flaskfleet_redis_cache_password: bbbbbbbbbbbbbbbb
    flaskfleet_redis_broker_password: cccccccccccccccc
  children:
    postgres_primary: {hosts: {db1: {private_ip: 10.0.0.51}}}
    postgres_replicas: {hosts: {db2: {private_ip: 10.0.0.52}, db3: {private_ip: 10.0.0.53}}}
    appservers: {hosts: {app1: {private_ip: 10.0.0.21}}}
"""


def promote(tmp_path, *extra):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    run = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "playbooks/promote_replica.yml", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return run.returncode, run.stdout + run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # The inventory's primary is no replica.
        (["-e", "new_primary=db1"], "one of the replicas of db1: ['db2', 'db3']"),
        # After a promotion to db2 (not in the inventory yet): db1 is fenced, not a replica.
        (
            ["-e", "new_primary=db1", "-e", "flaskfleet_primary_override=db2"],
            "one of the replicas of db2: ['db3'], or db2 itself",
        ),
    ],
)
def test_a_host_that_is_no_replica_of_the_current_primary_is_refused(tmp_path, args, message):
    rc, out = promote(tmp_path, *args)
    assert rc != 0
    assert message in out
    assert "Find the hosts that answer" not in out  # refused before any host is contacted


@pytest.mark.parametrize(
    "args",
    [
        ["-e", "new_primary=db2"],
        # A second promotion before the inventory is updated names the current primary.
        ["-e", "new_primary=db3", "-e", "flaskfleet_primary_override=db2"],
        # A re-run of the promotion to db2, with the override its first run asked for.
        ["-e", "new_primary=db2", "-e", "flaskfleet_primary_override=db2"],
    ],
)
def test_a_valid_request_goes_on_and_stops_when_the_new_primary_does_not_answer(tmp_path, args):
    rc, out = promote(tmp_path, *args)
    assert rc != 0
    assert "Find the hosts that answer" in out
    assert "is unreachable or its PostgreSQL does not answer" in out
    assert "nothing was changed" in out
