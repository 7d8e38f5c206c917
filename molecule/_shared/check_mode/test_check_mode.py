"""The check step of every scenario (the base config's test sequence runs this directory
with `verify ../_shared/check_mode` right after idempotence): the scenario's converge
playbook, run with --check on the converged hosts, must report changed=0 and failed=0 on
every host. Molecule's own `check` only proves that a dry run does not error."""

import os
import re
import subprocess
from pathlib import Path

import pytest

RECAP_LINE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)


def recap(output):
    """{host: {"ok": n, "changed": n, "unreachable": n, "failed": n}} from the PLAY RECAP."""
    _, found, tail = output.rpartition("PLAY RECAP")
    assert found, "no PLAY RECAP in the output"
    return {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in RECAP_LINE.finditer(tail)
    }


def changed_tasks(output):
    """The tasks that reported a change, as "TASK [name] -> changed: [host]"."""
    task, found = "", []
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line.rstrip(" *")
        elif line.startswith("changed:"):
            found.append(f"{task} -> {line.strip()}")
    return found


@pytest.mark.timeout(2400)  # a whole converge in check mode (the cluster's takes minutes)
def test_check_mode_on_the_converged_hosts_changes_nothing():
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    # As molecule runs converge (its ANSIBLE_CONFIG and roles path are in the environment).
    run = subprocess.run(
        ["ansible-playbook", "--inventory", str(inventory), "--skip-tags", "molecule-notest,notest",
         "--check", "--diff", str(scenario / "converge.yml")],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    hosts = recap(run.stdout)
    assert hosts, f"no host in the PLAY RECAP:\n{output[-6000:]}"
    dirty = {h: c for h, c in hosts.items() if c["changed"] or c["unreachable"] or c["failed"]}
    assert run.returncode == 0 and not dirty, (
        f"--check on the converged hosts: rc={run.returncode}, not clean: {dirty}\n"
        + "\n".join(changed_tasks(run.stdout))
        + f"\n--- tail of the run ---\n{output[-6000:]}"
    )
    print(f"--check: changed=0 failed=0 on {len(hosts)} host(s): {', '.join(sorted(hosts))}")
