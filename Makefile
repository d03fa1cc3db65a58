# Everything a newcomer needs: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sfi-installed

.PHONY: install demo demo-scicat test bench soak clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("sfi needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m scicat_fw_ingest.testing.demo

# The same pipeline into the real SciCat backend (../shared/scicat-backend: node + npm; ~8 s to start once cached).
demo-scicat: $(STAMP)
	@eval "$$(bash ../shared/scicat-backend/start.sh)" && trap 'kill $$SCICAT_PIDS' EXIT && \
	echo "real SciCat backend $$SCICAT_VERSION at $$SCICAT_URL" && \
	SFI_SCICAT_URL=$$SCICAT_URL SFI_SCICAT_USERNAME=admin SFI_SCICAT_PASSWORD=adminpass \
	$(BIN)/python -m scicat_fw_ingest.testing.demo

# The suite waits more than it computes (brokers, backends, files settling): 4 workers on 2 cores. Both real
# SciCat backend versions are started once for all workers (testing/backend.py run).
PYTEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/python -m scicat_fw_ingest.testing.backend run $(BIN)/python -m pytest -n $(PYTEST_WORKERS)

bench: $(STAMP)
	$(BIN)/python -m bench

# Issue 18's acceptance, ~15 min: two listeners as two hosts, 300 jobs, 4 partitions, 8 kill -9 during late-stored
# and lost datablock POSTs, admin and non-admin accounts, SciCat 5.1.0 and 4.5.0 (bench/soak_failover.py).
soak: $(STAMP)
	$(BIN)/python -m bench.soak_failover

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
