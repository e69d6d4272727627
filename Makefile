# Targets a newcomer runs. Each does its own set-up from a fresh clone (Python 3.11, JDK 17, Maven).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := $(VENV)/.deps-installed
KAFKA_LIB := .kafka/lib/.complete
# the classes a broker loads, archived once (AppCDS) so each node starts on a third of the CPU: kafka.py
CLASSES := .kafka/kafka-classes.jsa
JARS   := $(KAFKA_LIB) $(CLASSES)
# Kafka's command-line tools (one jar run on the broker's): the cluster tests ask kafka-metadata-quorum
TOOLS  := .kafka/tools/.complete
# MirrorMaker 2 (connect-mirror and Kafka Connect's runtime, a class path of its own): the standby site's mirror
MIRROR := .kafka/mirror/.complete
# the pages' vendored scripts (Apache ECharts for the board's map), from Maven as a WebJar: deploy/web/pom.xml
WEB    := .web/.complete
# Debian packages the tests use: promtool (prometheus) checks deploy/; chromium drives page tests;
# a CJK font so the page screenshots are legible; haproxy (`haproxy -c`) and systemd (`systemd-analyze
# verify`: Debian's minimal and container images come without it) check deploy/haproxy and deploy/systemd.
APT_PKGS := prometheus chromium fonts-wqy-microhei haproxy systemd
APT    := .venv/.apt-installed

.PHONY: standby-drill kafka-mirror properties test-cluster faults-cluster kafka-tools fuzz run run-cluster test test-unit test-e2e faults faults-delivery board-scale bench bench-smoke bench-board deps kafka-jars web-assets schemas clean

run: $(DEPS) $(JARS) $(WEB)  ## broker, worker and API, all local; Ctrl-C stops everything
	$(BIN)/yingji run

run-cluster: $(DEPS) $(JARS) $(WEB)  ## the same on a local three-node Kafka cluster (replication 3, min.insync.replicas 2; ports 9092-9097)
	YINGJI_KAFKA_NODES=3 $(BIN)/yingji run

# make test's stacks create their keyed topics with 4 partitions, not the catalog's 12: on two cores each
# stack's worker, delivery stage and read model then start on a third of the partitions, and make test
# keeps to its 15 minutes (all of it on 12: 1,367 s of pytest, 22.8 min, on two otherwise idle cores). The cluster's fault run, the migration test (4 grown to
# 12, then served) and every other target run on 12; the worker and the API take the count from the cluster.
# On 4, make test still took 1,432 s in CI (stop 30): the OpenAPI contract runs (about 250 s each, one per
# role) and the property suites (300 examples) were the most of it. make test signs the contract run in as a
# duty officer only (`make fuzz`: both roles, 40 cases) and runs 100 examples a property (`make properties`: 300).
# Two lanes (tests/lanes.py): two pytest processes side by side, the long self-starting end-to-end modules
# in one, the rest in the other: one process kept 0.81 of a core busy on average, of two (1,006 s of CPU in 1,239 s).
# Its Kafka nodes run C1 only (YINGJI_KAFKA_JVM_OPTS): they live minutes, and JIT work outweighs what C2 would
# win; with the class archive a node is ready in 3.2 s on 1.7 s of CPU (7.8 s on 5.8 s before either).
test: $(DEPS) $(JARS) $(MIRROR) $(WEB) $(APT)  ## every test, the end-to-end ones on a local Apache Kafka
	YINGJI_TOPIC_PARTITIONS=4 YINGJI_PROPERTY_EXAMPLES=100 YINGJI_KAFKA_JVM_OPTS=-XX:TieredStopAtLevel=1 \
	  $(BIN)/python -m tests.lanes

properties: $(DEPS)  ## the property suites (engine, CAP) at full size: 300 examples a property (make test runs 100)
	YINGJI_PROPERTY_EXAMPLES=300 $(BIN)/python -m pytest -q tests/playbooks/test_properties.py tests/playbooks/test_cap.py

test-unit: $(DEPS) $(WEB)  ## engine, contracts and agents: no broker needed
	$(BIN)/python -m pytest -q -m "not e2e"

test-e2e: $(DEPS) $(JARS) $(MIRROR) $(WEB)
	$(BIN)/python -m pytest -q -m e2e

deps: $(DEPS)
$(DEPS): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

$(APT): Makefile | $(DEPS)  # a package added to APT_PKGS is installed on a machine set up before
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null; \
	fi
	touch $@

kafka-jars: $(JARS)
$(KAFKA_LIB): deploy/kafka/pom.xml
	rm -rf .kafka/lib .kafka/kafka-classes.jsa  # a pom changed: not two Kafka versions on one class path
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/.kafka/lib
	# the stamp services/local/kafka.py's ensure_jars reads: without it the first node fetches them all again
	sha256sum deploy/kafka/pom.xml | cut -d' ' -f1 > .kafka/lib/.pom-sha256
	touch $@

$(CLASSES): $(KAFKA_LIB) | $(DEPS)
	# only a speed-up: without it (a JDK with no base archive, say) every node starts as before
	$(BIN)/python -m services.local.kafka --make-class-archive || echo "no class archive: Kafka nodes start without it"

kafka-tools: $(TOOLS)
$(TOOLS): deploy/kafka/tools/pom.xml | $(KAFKA_LIB)
	mvn -q -B -f deploy/kafka/tools/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/.kafka/tools
	touch $@

# the stamp is the pom's digest, as services/local/mirror.py (ensure_mirror) checks it: no second fetch from Python
kafka-mirror: $(MIRROR)
$(MIRROR): deploy/kafka/mirror/pom.xml
	rm -rf .kafka/mirror
	mvn -q -B -f deploy/kafka/mirror/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/.kafka/mirror
	sha256sum deploy/kafka/mirror/pom.xml | cut -d' ' -f1 > .kafka/mirror/.pom-sha256
	touch $@

# Apache ECharts (Apache-2.0): the one minified bundle and its LICENSE and NOTICE, served at /static/vendor/
web-assets: $(WEB)
$(WEB): deploy/web/pom.xml
	rm -rf .web/maven .web/vendor
	mvn -q -B -f deploy/web/pom.xml dependency:unpack-dependencies
	mkdir -p .web/vendor
	cd .web/maven/unpacked/META-INF/resources/webjars/echarts/* && \
	  cp dist/echarts.min.js $(CURDIR)/.web/vendor/ && \
	  cp LICENSE $(CURDIR)/.web/vendor/echarts.LICENSE.txt && \
	  cp NOTICE $(CURDIR)/.web/vendor/echarts.NOTICE.txt && \
	  cp licenses/LICENSE-d3 $(CURDIR)/.web/vendor/echarts.LICENSE-d3.txt
	touch $@

faults: $(DEPS) $(JARS)  ## issue 5's fault test at full size: 10,000 incidents in flight, worker SIGKILLed
	$(BIN)/python -m pytest -q -s tests/e2e/test_faults.py --fault-incidents=10000

faults-delivery: $(DEPS) $(JARS)  ## issue 19's fault test at full size: 10,000 notices, the delivery stage SIGKILLed five times
	$(BIN)/python -m pytest -q -s tests/e2e/test_delivery_faults.py --delivery-notices=10000 --delivery-kills=5

test-cluster: $(DEPS) $(JARS)  ## the three-node Kafka cluster started and a partition's leader SIGKILLed mid-write (minutes)
	$(BIN)/python -m pytest -q -s -m cluster tests/e2e/test_cluster.py

faults-cluster: $(DEPS) $(JARS) $(TOOLS) $(APT)  ## issue 22's faults on the three-node cluster at full size, two workers and two API replicas behind haproxy: 100 reports/s for 60 s, a partition's leader, the active controller, a worker, an API replica each SIGKILLed in a run of its own (about 20 minutes)
	$(BIN)/python -m pytest -q -s -m cluster tests/e2e/test_faults_cluster.py --cluster-rate=100 --cluster-seconds=60

standby-drill: $(DEPS) $(JARS) $(MIRROR)  ## issue 22 item 5, the standby site (deploy/STANDBY.md): 20 reports/s for 60 s at the primary, MM2 copying to the standby's Kafka, the primary SIGKILLed, the standby's worker and API serving; prints the mirror's lag at the cut and what was lost (minutes)
	$(BIN)/python -m pytest -q -s tests/e2e/test_standby.py --standby-rate=20 --standby-seconds=60 --standby-stall=0 --standby-recover

fuzz: $(DEPS) $(JARS) $(WEB)  ## the API fuzzed from its OpenAPI document at full size (40 cases an operation; make test runs 8)
	$(BIN)/python -m pytest -q -s tests/e2e/test_fuzz.py --fuzz-examples=40 --fuzz-roles=duty_officer,commander

board-scale: $(DEPS) $(JARS) $(WEB) $(APT)  ## issue 21's board test at full size: 5,000 open incidents in Chromium, screenshots in screenshots/
	$(BIN)/python -m pytest -q -s tests/pages/test_board_scale.py --board-incidents=5000

bench: $(DEPS) $(JARS) $(WEB) $(APT)  ## the benchmarks side by side with raw baselines (minutes); prints a table, writes JSON
	$(BIN)/python -m tests.bench

bench-smoke: $(DEPS) $(JARS) $(WEB) $(APT)  ## the same harness, small (seconds); also run by make test
	$(BIN)/python -m tests.bench --smoke

bench-board: $(DEPS) $(JARS) $(WEB) $(APT)  ## the board page alone (issue 21): 5,000 open incidents in Chromium; first paint, snapshot size, change to screen
	$(BIN)/python -m tests.bench --only board

.PHONY: bench-whatif
bench-whatif: $(DEPS)  ## the what-if replay alone (issue 24): busy night and a synthetic year of 20,000 incidents; no broker
	$(BIN)/python -m tests.bench.whatif

schemas: $(DEPS)  ## rewrite the exported JSON Schemas after a contract or playbook-format change
	$(BIN)/python -m topics.schemas
	$(BIN)/python -m playbooks.schemas

clean:
	rm -rf $(VENV) .kafka .web .pytest_cache
