#!/usr/bin/python3
"""Print a bcrypt hash of a password for Prometheus' and Alertmanager's web config.

Reads JSON from stdin (never the command line): {"password": ..., "hash": ..., "cost": 12}.
Prints ``hash`` unchanged when it is the password's (so a re-run changes nothing), else a
new hash with a new salt. Managed by flaskfleet (roles/monitoring).
"""

import json
import sys

import bcrypt

request = json.load(sys.stdin)
password = request["password"].encode()
current = (request.get("hash") or "").encode()
try:
    same = bool(current) and bcrypt.checkpw(password, current)
except ValueError:  # not a bcrypt hash
    same = False
if not same:
    current = bcrypt.hashpw(password, bcrypt.gensalt(int(request["cost"])))
print(current.decode())
