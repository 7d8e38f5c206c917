#!/usr/bin/python
"""Apply a rendered upstream.conf and its upstream.json at a load balancer, in one task.

The drain/undrain entry point (tasks/upstream.yml) renders the candidate upstream.conf
on the controller and hands it here with the new document. This module keeps the
guarantees of the role's validated write path (tasks/validate.yml) in one round trip:

* nothing to do when the live upstream.conf and upstream.json already hold the
  candidate (changed=false, no reload);
* a candidate that changes upstream.conf is first tested with ``nginx -t`` as a whole
  configuration in a scratch directory (the live nginx.conf and role files, the
  candidate upstream.conf over them); a rejected candidate fails the task with nginx's
  own message and leaves the live files and the running nginx untouched;
* then the files are written (atomically), nginx reloads, and the module returns once
  the workers of the previous configuration have exited (in-flight requests finished),
  or after ``wait_seconds``: the change is in force when the task returns;
* in check mode nothing is written or reloaded (the candidate is still tested) and
  ``changed`` says whether a real run would change anything.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: nginx_upstream_apply
short_description: Validate, write and reload a new nginx upstream (flaskfleet nginx role)
description:
  - Internal to the nginx role's upstream.yml entry point. Tests the candidate
    upstream.conf with nginx -t against the live configuration, writes it and the
    upstream document, reloads nginx and waits for the previous workers to exit.
options:
  conf_dir:
    description: nginx configuration directory (the role's files are in its flaskfleet/).
    type: path
    required: true
  upstream_conf:
    description: Content of the new flaskfleet/upstream.conf.
    type: str
    required: true
  state_file:
    description: Path of the upstream document.
    type: path
    required: true
  state_content:
    description: Content of the new upstream document.
    type: str
    required: true
  wait_seconds:
    description: Longest wait for the previous workers to exit after the reload.
    type: int
    default: 60
  nginx:
    description: Path of the nginx binary.
    type: path
    default: /usr/sbin/nginx
supports_check_mode: true
"""

UPSTREAM = "flaskfleet/upstream.conf"


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(module, path, content):
    """Write content to path atomically, root:root 0644."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ff-upstream-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        if os.geteuid() == 0:
            os.chown(tmp, 0, 0)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _validate(module, conf_dir, candidate, nginx):
    """nginx -t on the live configuration with the candidate upstream.conf; fail on rejection."""
    scratch = tempfile.mkdtemp(suffix=".nginx-candidate")
    try:
        os.makedirs(os.path.join(scratch, "flaskfleet"))
        live_conf = os.path.join(conf_dir, "nginx.conf")
        if os.path.isfile(live_conf):
            prefix = re.escape(os.path.join(conf_dir, "flaskfleet") + "/")
            text = _read(live_conf)
            # The live nginx.conf includes the live role files: point the copy at the candidate's.
            text = re.sub(
                r"(?m)^(\s*include\s+)" + prefix,
                lambda m: m.group(1) + scratch + "/flaskfleet/",
                text,
            )
            with open(os.path.join(scratch, "nginx.conf"), "w", encoding="utf-8") as f:
                f.write(text)
        live_dir = os.path.join(conf_dir, "flaskfleet")
        if os.path.isdir(live_dir):
            for name in sorted(os.listdir(live_dir)):
                src = os.path.join(live_dir, name)
                if name.endswith(".conf") and os.path.isfile(src):
                    shutil.copy(src, os.path.join(scratch, "flaskfleet", name))
        with open(os.path.join(scratch, UPSTREAM), "w", encoding="utf-8") as f:
            f.write(candidate)
        test = [nginx, "-t", "-q", "-c", os.path.join(scratch, "nginx.conf")]
        rc, out, err = module.run_command(test)
        if rc != 0:
            said = (err + out).replace(scratch, conf_dir).strip()
            module.fail_json(
                msg=(
                    "nginx rejected the new configuration (paths below name the files it would "
                    "have replaced); the live files and the running nginx were left unchanged. "
                    "nginx -t said: " + said
                ),
                rc=rc,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _workers():
    """PIDs of nginx worker processes (serving or shutting down)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if cmdline.startswith(b"nginx: worker process"):
            pids.add(int(entry))
    return pids


def main():
    module = AnsibleModule(
        argument_spec={
            "conf_dir": {"type": "path", "required": True},
            "upstream_conf": {"type": "str", "required": True},
            "state_file": {"type": "path", "required": True},
            "state_content": {"type": "str", "required": True},
            "wait_seconds": {"type": "int", "default": 60},
            "nginx": {"type": "path", "default": "/usr/sbin/nginx"},
        },
        supports_check_mode=True,
    )
    p = module.params
    conf_path = os.path.join(p["conf_dir"], UPSTREAM)
    conf_changed = _read(conf_path) != p["upstream_conf"]
    state_changed = _read(p["state_file"]) != p["state_content"]
    result = {
        "changed": conf_changed or state_changed,
        "upstream_changed": conf_changed,
        "reloaded": False,
    }
    if not result["changed"]:
        module.exit_json(**result)
    if conf_changed:
        _validate(module, p["conf_dir"], p["upstream_conf"], p["nginx"])
    if module.check_mode:
        module.exit_json(**result)

    old_workers = _workers() if conf_changed else set()
    if conf_changed:
        _write(module, conf_path, p["upstream_conf"])
    if state_changed:
        _write(module, p["state_file"], p["state_content"])
    if conf_changed:
        module.run_command(["systemctl", "reload-or-restart", "nginx"], check_rc=True)
        result["reloaded"] = True
        # The drain is complete once every worker of the previous configuration has
        # finished its in-flight requests and exited.
        deadline = time.monotonic() + p["wait_seconds"]
        remaining = old_workers & _workers()
        while remaining and time.monotonic() < deadline:
            time.sleep(0.1)
            remaining = old_workers & _workers()
        result["old_workers_left"] = sorted(remaining)
        waited = p["wait_seconds"] - max(0.0, deadline - time.monotonic())
        result["waited_seconds"] = round(waited, 1)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
