# flaskfleet — the two commands: `make up` (a local lab running the whole
# stack) and `make test` (lint, the app's tests, every molecule scenario).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Scenarios `make molecule` runs (all of molecule/*/ by default) and how many at once.
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
MOLECULE_JOBS ?= 2
LAB_URL := http://127.0.0.1:8080/

.PHONY: help deps image up down scale-out scale-in backup-info test checks checks-in-turn lint unit-test app-test example-test rules-test molecule bench bench-deploy bench-failover bench-report clean

help:
	@echo "make up        build what is needed, start the lab, run site.yml, print the URL"
	@echo "make test      lint + app tests + every molecule scenario"
	@echo "make down      remove the lab containers and network (keeps the image)"
	@echo "make scale-out add app3 to the lab and converge it (scale-in reverses it)"
	@echo "make bench     the benchmark suite on a freshly built lab (over an hour; ITEMS='lb cache'"
	@echo "               runs some items on the lab as it is): bench/report.md, plots, README table"
	@echo "make bench-deploy    rolling vs naive deploy under load on the lab (failed requests each)"
	@echo "make bench-failover  planned and unplanned database failover under load on the lab"
	@echo "make bench-report    collect the last make test's load reports and the bench-* results into"
	@echo "                     bench/results/, write bench/report.md, its plots and the README table"
	@echo "make backup-info     the lab's last backup (age, size) and WAL archive; fails if stale"
	@echo "make deps | image | lint | unit-test | rules-test | app-test | molecule SCENARIOS='redis nginx'"

# The controller toolchain, pinned (requirements-dev.txt); collections come with
# the `ansible` package and requirements.yml is checked against them offline.
deps: $(VENV)/.deps-stamp
$(VENV)/.deps-stamp: requirements-dev.txt requirements.yml
	@tools/require_root.sh
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
	@test -x $(VENV)/bin/pip || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	@command -v ssh-keygen >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client >/dev/null; }
	cd /tmp && $(CURDIR)/$(VENV)/bin/ansible-galaxy collection install -r $(CURDIR)/requirements.yml
	@touch $@

# Debian 12 systemd base image for lab hosts and molecule platforms
# (installs docker.io/debootstrap and starts dockerd when missing).
image:
	@tools/require_root.sh
	tools/image/build.sh

up: deps image
	python tools/lab.py up
	ansible-playbook site.yml
	@echo
	@echo "flaskfleet is up: $(LAB_URL)  (HTTPS: https://127.0.0.1:8443/, self-signed)"
	@echo "private listener (/metrics, /readyz, /api/jobs): http://127.0.0.1:8088/"
	@echo "monitoring: Prometheus http://127.0.0.1:9090/  Alertmanager http://127.0.0.1:9093/  (user admin, password in credentials/monitoring_password)"
	@echo "backups: make backup-info"

down: deps
	@tools/require_root.sh
	@if docker info >/dev/null 2>&1; then python tools/lab.py down; fi
	@rm -f inventory/lab/90-scale-out.yml

# Scale out the lab by one app server, the way a user scales out real hosts:
# add it to the inventory, then converge it and the hosts that must learn about it.
scale-out: deps image
	cp tools/lab-scale-out.yml inventory/lab/90-scale-out.yml
	python tools/lab.py up app3
	ansible-playbook site.yml --limit app3,loadbalancers,postgres_primary,postgres_replicas,redis,monitoring
	@echo "app3 is serving behind $(LAB_URL)"

# Scale in: move app3 to the retired group and converge (drain, stop, pg_hba),
# then drop it from the inventory and remove its container.
scale-in: deps
	cp tools/lab-scale-in.yml inventory/lab/90-scale-out.yml
	ansible-playbook site.yml --limit app3,loadbalancers,postgres_primary,postgres_replicas,redis,monitoring
	rm -f inventory/lab/90-scale-out.yml
	python tools/lab.py down app3
	@echo "app3 is retired; $(LAB_URL) is served by the remaining app servers"

# The molecule scenarios start at once and the other checks run beside them, one after
# another (a make of their own with one job: given as four jobs of this make, they took
# both slots and the scenarios waited for them). The scenarios are the long part. Any
# failure fails `make test`, once both sides have finished.
test: deps image
	$(MAKE) --no-print-directory -j2 molecule checks-in-turn

checks-in-turn:
	$(MAKE) --no-print-directory -j1 checks

checks: lint unit-test rules-test app-test example-test

lint: deps
	yamllint -s .
	ansible-lint
	ruff check tools filter_plugins roles tests molecule benchmarks app_src examples
	ruff format --check tools filter_plugins roles tests molecule benchmarks app_src examples

unit-test: deps
	pytest -q tests

app-test:
	@tools/require_root.sh
	bash app_src/scripts/install-test-deps.sh
	bash app_src/scripts/run-tests.sh

# The second app (examples/inkpot, the app contract's proof) on SQLite, from its hash-checked lock.
example-test: deps
	@test -x .cache/inkpot-venv/bin/python || python3 -m venv .cache/inkpot-venv
	.cache/inkpot-venv/bin/pip install -q --require-hashes -r examples/inkpot/requirements.lock
	.cache/inkpot-venv/bin/pip install -q pytest==$$(sed -n 's/^pytest==//p' requirements-dev.txt)
	.cache/inkpot-venv/bin/pip install -q --no-deps --force-reinstall examples/inkpot
	cd /tmp && $(CURDIR)/.cache/inkpot-venv/bin/python -m pytest -q -p no:cacheprovider $(CURDIR)/examples/inkpot/tests

# promtool from Debian's prometheus package, unpacked into .cache/promtool (no service is
# installed or started on this machine), checks roles/monitoring's alert rules and runs their
# unit tests (roles/monitoring/tests/) against the rules rendered with the role's defaults.
PROMTOOL := .cache/promtool/usr/bin/promtool
$(PROMTOOL):
	@tools/require_root.sh
	@mkdir -p .cache/promtool/deb
	cd .cache/promtool/deb && rm -f prometheus_*.deb && \
	  { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb -x .cache/promtool/deb/prometheus_*.deb .cache/promtool
	@test -x $@

rules-test: deps $(PROMTOOL)
	rm -rf .cache/promtool/rules
	python tools/render_rules.py .cache/promtool/rules
	$(PROMTOOL) check rules .cache/promtool/rules/flaskfleet.rules.yml
	$(PROMTOOL) test rules .cache/promtool/rules/*.test.yml

# MITOGEN=0: the scenarios on Ansible's own linear strategy instead of Mitogen's
# (.config/molecule/config.yml); the same playbooks run either way.
molecule: deps image
	$(if $(filter 0,$(MITOGEN)),ANSIBLE_STRATEGY=linear) tools/run_scenarios.sh $(MOLECULE_JOBS) $(SCENARIOS)

# The lab's backups (playbooks/backup_info.yml; pass -i for a real inventory).
backup-info: deps
	ansible-playbook playbooks/backup_info.yml -e backup_check=true

# Benchmarks print figures; they are not tests. `make bench` runs the suite
# (benchmarks/suite.py: every item on a freshly built lab, or ITEMS on the lab as it is),
# writes bench/results/suite-<item>.json and the plots, then the report and README table.
# wrk (Debian's package) measures saturation throughput; tools/loadgen.py the open-loop load.
ITEMS ?=
bench: deps image
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	python -c 'import matplotlib' 2>/dev/null || pip install -q -r requirements-bench.txt
	python benchmarks/suite.py $(ITEMS)
	python benchmarks/report.py render

bench-deploy: deps
	python benchmarks/deploy_under_load.py

# Write outage and lost jobs of a planned switchover and of an unplanned failover (a
# killed primary); the lab ends as it started (db1 primary, db2 replica).
bench-failover: deps
	python benchmarks/failover.py

# The report and the README's "Measured" table, from measurements only (never typed):
# the newest `make test` logs (.cache/molecule-logs) and .bench/ results, each with its commit.
bench-report: deps
	python -c 'import matplotlib' 2>/dev/null || pip install -q -r requirements-bench.txt
	python benchmarks/report.py collect-molecule
	python benchmarks/report.py collect-bench
	python benchmarks/report.py render

clean: down
	rm -rf $(VENV) .cache
