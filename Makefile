# Targets a newcomer runs. Each does its own set-up from a fresh clone (Python 3.11, JDK 17, Maven).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := $(VENV)/.deps-installed
JARS   := .kafka/lib/.complete
# Debian packages the tests use: promtool (prometheus) checks deploy/; chromium drives page tests;
# a CJK font so the page screenshots are legible.
APT_PKGS := prometheus chromium fonts-wqy-microhei
APT    := .venv/.apt-installed

.PHONY: run test test-unit test-e2e faults faults-delivery board-scale bench bench-smoke deps kafka-jars schemas clean

run: $(DEPS) $(JARS)  ## broker, worker and API, all local; Ctrl-C stops everything
	$(BIN)/yingji run

test: $(DEPS) $(JARS) $(APT)  ## every test, the end-to-end ones on a local Apache Kafka
	$(BIN)/python -m pytest -q

test-unit: $(DEPS)  ## engine, contracts and agents: no broker needed
	$(BIN)/python -m pytest -q -m "not e2e"

test-e2e: $(DEPS) $(JARS)
	$(BIN)/python -m pytest -q -m e2e

deps: $(DEPS)
$(DEPS): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

$(APT): | $(DEPS)
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null; \
	fi
	touch $@

kafka-jars: $(JARS)
$(JARS): deploy/kafka/pom.xml
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/.kafka/lib
	touch $@

faults: $(DEPS) $(JARS)  ## issue 5's fault test at full size: 10,000 incidents in flight, worker SIGKILLed
	$(BIN)/python -m pytest -q -s tests/e2e/test_faults.py --fault-incidents=10000

faults-delivery: $(DEPS) $(JARS)  ## issue 19's fault test at full size: 10,000 notices, the delivery stage SIGKILLed five times
	$(BIN)/python -m pytest -q -s tests/e2e/test_delivery_faults.py --delivery-notices=10000 --delivery-kills=5

board-scale: $(DEPS) $(JARS) $(APT)  ## issue 21's board test at full size: 5,000 open incidents in Chromium, screenshots in screenshots/
	$(BIN)/python -m pytest -q -s tests/pages/test_board_scale.py --board-incidents=5000

bench: $(DEPS) $(JARS)  ## the benchmarks side by side with raw baselines (minutes); prints a table, writes JSON
	$(BIN)/python -m tests.bench

bench-smoke: $(DEPS) $(JARS)  ## the same harness, small (seconds); also run by make test
	$(BIN)/python -m tests.bench --smoke

schemas: $(DEPS)  ## rewrite the exported JSON Schemas after a contract or playbook-format change
	$(BIN)/python -m topics.schemas
	$(BIN)/python -m playbooks.schemas

clean:
	rm -rf $(VENV) .kafka .pytest_cache
