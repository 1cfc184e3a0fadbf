# Two commands: `make demo` starts a demo workspace, `make test` runs the whole suite.
# Ports and sizes can be overridden: `make demo PORT=8001 SANDBOX_PORT=8766 CONTACTS=500`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

HOST ?= 127.0.0.1
PORT ?= 8000
SANDBOX_PORT ?= 8765
CONTACTS ?= 5000
WEB_THREADS ?= 8
APP_URL := http://$(HOST):$(PORT)
SANDBOX_URL := http://$(HOST):$(SANDBOX_PORT)
PYTEST_ARGS ?=
# pytest-xdist workers; each has its own test database, cache, sandbox and servers.
TEST_WORKERS ?= 2

RUN_DIR := var/run
LOG_DIR := var/log
SERVICES := web worker sandbox
LOGINS := var/demo-logins.txt
# The shared hostile records, beside the checkout in this workplace and in CI; the demo
# seeds them when they are there.
HOSTILE_FILE := ../shared/data/hostile_contacts.json

.PHONY: help install demo stop test
# `demo` must stop the old processes before it starts new ones.
.NOTPARALLEL:
# Recipes print what they do themselves.
.SILENT: help .env demo stop test

help:
	echo "make demo   virtualenv, install, migrate, sandbox with $(CONTACTS) contacts, web server and worker"
	echo "make stop   stop the demo's web server, worker and sandbox"
	echo "make test   the whole test suite"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when pyproject.toml changes.
$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(INSTALLED)

# Generated once and never overwritten: the encrypted credentials depend on these keys.
.env:
	umask 077
	$(PYTHON) -c 'import secrets; print(f"SECRET_KEY={secrets.token_urlsafe(50)}"); print(f"SALT_KEY={secrets.token_urlsafe(32)}")' > $@.tmp
	mv $@.tmp $@
	echo "Generated .env with a new SECRET_KEY and SALT_KEY."

# Start a service in its own session, so that `make stop` can end its whole process
# group (qcluster's workers included). $(1): name, $(2): command. The web server and the
# worker are given the sandbox's address (SANDBOX_URL): connections to it authorize
# through its OAuth app.
define start_service
setsid $(2) >> $(LOG_DIR)/$(1).log 2>&1 < /dev/null &
echo $$! > $(RUN_DIR)/$(1).pid
endef

# Wait until $(2) answers, failing early with the log's tail if service $(1) exits.
define wait_for
for attempt in $$(seq 1 120); do
	if $(PY) -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' '$(2)' 2>/dev/null; then break; fi
	if ! kill -0 "$$(cat $(RUN_DIR)/$(1).pid)" 2>/dev/null || [ "$$attempt" -eq 120 ]; then
		echo "$(1) did not come up at $(2); the end of $(LOG_DIR)/$(1).log:" >&2
		tail -n 30 $(LOG_DIR)/$(1).log >&2
		exit 1
	fi
	sleep 0.5
done
endef

# Refuse a port another program holds, naming the override.
define check_port_free
if ! $(PY) -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((sys.argv[1], int(sys.argv[2])))' '$(HOST)' '$(2)' 2>/dev/null; then
	echo "Port $(2) on $(HOST) is in use; pick another: make demo $(1)=<free port>" >&2
	exit 1
fi
endef

demo: install .env stop
	mkdir -p $(RUN_DIR) $(LOG_DIR)
	$(call check_port_free,SANDBOX_PORT,$(SANDBOX_PORT))
	$(call check_port_free,PORT,$(PORT))
	$(PY) manage.py migrate --noinput --verbosity 0
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(call start_service,sandbox,$(PY) manage.py sandbox --addr $(HOST):$(SANDBOX_PORT) --data-dir var/sandbox --hostile-file $(HOSTILE_FILE))
	$(call wait_for,sandbox,$(SANDBOX_URL)/_sandbox/info)
	$(PY) manage.py seed_demo --sandbox-url $(SANDBOX_URL) --contacts $(CONTACTS) --logins-file $(LOGINS) \
		$(if $(wildcard $(HOSTILE_FILE)),--hostile,--no-hostile)
	$(call start_service,web,env SANDBOX_URL=$(SANDBOX_URL) $(VENV)/bin/waitress-serve --listen=$(HOST):$(PORT) --threads=$(WEB_THREADS) syncapp.wsgi:application)
	$(call start_service,worker,env SANDBOX_URL=$(SANDBOX_URL) $(PY) manage.py qcluster)
	$(call wait_for,web,$(APP_URL)/login/)
	sleep 2
	if ! kill -0 "$$(cat $(RUN_DIR)/worker.pid)" 2>/dev/null; then
		echo "The worker exited; the end of $(LOG_DIR)/worker.log:" >&2
		tail -n 30 $(LOG_DIR)/worker.log >&2
		exit 1
	fi
	echo
	echo "Syncapp is running at $(APP_URL)/"
	echo "Sandbox (HubSpot, Mailchimp and ActiveCampaign emulators): $(SANDBOX_URL)/"
	echo "Logs: $(LOG_DIR)/{web,worker,sandbox}.log    Stop: make stop"
	echo
	echo "Logins (also in $(LOGINS)):"
	awk -F= '/^# [a-z]+: / { split(substr($$0, 3), part, ": "); role[part[1]] = part[2]; next }
		!/^#/ && NF { printf "  %-11s password %-22s %s\n", $$1, $$2, role[$$1] }' $(LOGINS)

# Ends only processes this checkout started: each pid file names a session leader whose
# working directory is this checkout. The leader alone gets SIGTERM, so that qcluster
# stops its own workers in order (a signal to the whole group leaves it waiting for
# them); whatever of the group is left after 30 s is killed.
stop:
	for name in $(SERVICES); do
		pidfile=$(RUN_DIR)/$$name.pid
		[ -f "$$pidfile" ] || continue
		pid=$$(cat "$$pidfile")
		if kill -0 "$$pid" 2>/dev/null && [ "$$(readlink /proc/$$pid/cwd)" = "$(CURDIR)" ]; then
			kill -TERM "$$pid" 2>/dev/null || true
			for attempt in $$(seq 1 60); do
				kill -0 "$$pid" 2>/dev/null || break
				sleep 0.5
			done
			kill -KILL -- "-$$pid" 2>/dev/null || true
			echo "Stopped the $$name (pid $$pid)."
		fi
		rm -f "$$pidfile"
	done

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
test: install
	mkdir -p var
	echo "ruff check ."
	$(PY) -m ruff check .
	echo "mypy (syncapp/engine, connections/providers)"
	$(PY) -m mypy
	status=0
	echo "pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)"
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS) || status=$$?
	if [ "$$status" -eq 5 ]; then echo "pytest collected no tests." >&2; exit 1; fi
	exit "$$status"
