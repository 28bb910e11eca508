# iSIKHNAS infrastructure: entry points. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

STATE    := $(CURDIR)/.state
VENV     := $(STATE)/venv
BIN      := $(VENV)/bin
DVENV    := $(STATE)/daemons-venv
PYTHON   ?=
# One ANSIBLE_HOME per make run: parallel runs and CI never share ~/.ansible.
RUN_ID   := $(shell date +%Y%m%d-%H%M%S)-$(shell echo $$$$)
export ANSIBLE_HOME := $(STATE)/ansible/$(RUN_ID)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= false
export PATH := $(BIN):$(PATH)
export MOLECULE_GLOB := molecule/*/molecule.yml
export PY_COLORS := 0

SCENARIOS ?= $(sort $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
S        ?=
DISTRO   ?=
STAGE    := tests/stage
# Controller-side Python for ruff (scripts without a .py suffix are named one by one).
RUFF_PATHS := tests molecule plugins bench/pipeline bench/failover bench/converge bench/connection tests/run-stages roles/*/files roles/repmgr/files/usr/local/sbin/isikhnas-db-primary-dns \
              roles/repmgr/files/usr/local/sbin/isikhnas-pg-guard
# This machine's pip configuration names local indexes that may not exist; keep pip's output readable.
PIP_QUIET := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

.PHONY: help venv daemons-venv images dockerd host-deps lint unit daemons aws molecule molecule-all test lab \
        lab-test lab-check lab-ci lab-down clean

help: ## List the entry points
	@awk -F':.*## ' '/^[a-z-]+:.*## /{printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements.txt
	@py=$$(PYTHON="$(PYTHON)" tests/find-python) && echo "venv: $$py" && \
	  { [ -x $(BIN)/python ] || "$$py" -m venv $(VENV); } && \
	  $(BIN)/pip install --quiet --upgrade pip $(PIP_QUIET) && \
	  $(BIN)/pip install --quiet -r requirements.txt $(PIP_QUIET) && $(BIN)/ansible --version >/dev/null
	@touch $@

venv: $(VENV)/.installed ## Create the controller virtualenv (Python >= 3.12) from requirements.txt

$(DVENV)/.installed: files/daemons/pyproject.toml
	@py=$$(PYTHON="$(PYTHON)" tests/find-python) && \
	  { [ -x $(DVENV)/bin/python ] || "$$py" -m venv $(DVENV); } && \
	  $(DVENV)/bin/pip install --quiet --upgrade pip $(PIP_QUIET) && \
	  $(DVENV)/bin/pip install --quiet -e 'files/daemons[dev]' $(PIP_QUIET) && $(DVENV)/bin/python -c 'import isikhnas_daemons'
	@touch $@

daemons-venv: $(DVENV)/.installed ## Create the daemons' development virtualenv

host-deps: ## Install controller packages the tests need (PostgreSQL + PostGIS) when missing
	@tests/host-deps

dockerd: ## Install docker.io/debootstrap if missing and start the Docker engine
	@tests/images/dockerd-up

images: ## Build the local systemd base images (only when their recipe changed)
	@tests/images/build >/dev/null

lint: venv ## yamllint, ansible-lint (production profile; its syntax-check rule checks every playbook), ruff, mypy
	yamllint --strict .
	ansible-lint --offline --profile production
	ruff check $(RUFF_PATHS)
	ruff format --check $(RUFF_PATHS)
	mypy --strict --python-version 3.11 --scripts-are-modules roles/repmgr/files/usr/local/sbin/isikhnas-pg-guard

unit: venv ## Controller-side unit tests (inventory, role contract)
	pytest -q tests/unit

daemons: daemons-venv host-deps ## The daemons package: ruff, mypy --strict, pytest (real PostgreSQL, moto)
	cd files/daemons && $(DVENV)/bin/ruff check . && $(DVENV)/bin/ruff format --check . && \
	  $(DVENV)/bin/mypy && $(DVENV)/bin/pytest -q

aws: venv ## Offline AWS tests against moto
	pytest -q --durations=10 tests/aws

molecule: venv dockerd images ## One scenario: make molecule S=platform [DISTRO=bookworm|trixie]
	@test -n "$(S)" || { echo "usage: make molecule S=<scenario> (one of: $(SCENARIOS))"; exit 2; }
	tests/molecule-scenario $(S) $(DISTRO)

molecule-all: venv dockerd images ## Every molecule scenario, one after the other
	@for s in $(SCENARIOS); do $(STAGE) molecule:$$s tests/molecule-scenario $$s $(DISTRO) || exit 1; done

# make test runs its stages TEST_JOBS at a time (tests/run-stages), longest first, the base images built while
# the virtualenv is made and the AWS tests run: a scenario mostly waits (packages, services, failovers), so two at once on two cores save a
# third of the wall time. TEST_JOBS=1 runs them one after the other.
TEST_JOBS ?= 2
MOLECULE_ORDER := postgresql_ha webtier python_daemons platform bastion postgresql
TEST_STAGES := images venv molecule:postgresql_ha lab-ci aws \
               $(addprefix molecule:,$(filter-out postgresql_ha,$(MOLECULE_ORDER)) $(filter-out $(MOLECULE_ORDER),$(SCENARIOS))) \
               lint daemons unit

test: ## Everything CI runs: lint, unit, daemons, aws, every molecule scenario and the lab end to end (lab-ci)
	@rm -f $(STATE)/stages.log $(STATE)/why-failed.log
	@$(MAKE) --no-print-directory dockerd
	@rc=0; tests/run-stages -j $(TEST_JOBS) $(TEST_STAGES) || rc=$$?; $(STAGE) --summary || rc=1; \
	  [ $$rc -eq 0 ] || cat $(STATE)/why-failed.log 2>/dev/null; exit $$rc

lab: venv dockerd images ## Bring up the whole system locally (containers + emulated AWS) and converge site.yml
	ansible-playbook -i inventories/lab playbooks/lab_up.yml
	ansible-playbook -i inventories/lab playbooks/site.yml

lab-test: venv ## make lab twice (the second run must report changed=0), then the lab's behaviour (tests/lab)
	tests/lab-idempotence
	pytest -q tests/lab

lab-check: venv ## The lab's behaviour only (tests/lab), on a lab that is up
	pytest -q tests/lab

lab-ci: venv ## The lab end to end, as make test runs it: from nothing, make lab-test, then make lab-down (pass or fail)
	@$(MAKE) --no-print-directory lab-down >/dev/null
	@rc=0; $(MAKE) --no-print-directory lab-test || rc=$$?; $(MAKE) --no-print-directory lab-down >/dev/null || rc=1; exit $$rc

lab-down: venv ## Remove the lab's containers and networks
	ansible-playbook -i inventories/lab playbooks/lab_down.yml

clean: ## Remove per-run Ansible homes and caches (keeps the venv)
	rm -rf $(STATE)/ansible $(STATE)/facts $(STATE)/cp
