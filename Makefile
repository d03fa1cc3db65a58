# Everything a newcomer needs: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sfi-installed

.PHONY: install demo demo-scicat lint test test-numpy1 test-min bench soak clean

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

# The gate, first in `make test` (so in CI): ruff (pyproject [tool.ruff]) and mypy (strict on the core packages,
# pyproject [tool.mypy]) over the package, the tests and the benchmarks; any finding stops the run before the tests.
lint: $(STAMP)
	$(BIN)/ruff check scicat_fw_ingest tests bench
	$(BIN)/mypy scicat_fw_ingest tests bench

# The suite waits more than it computes (brokers, backends, files settling): 4 workers on 2 cores. Both real
# SciCat backend versions are started once for all workers (testing/backend.py run).
PYTEST_WORKERS ?= 4
test: $(STAMP) lint
	$(BIN)/python -m scicat_fw_ingest.testing.backend run $(BIN)/python -m pytest -n $(PYTEST_WORKERS)

# The lower end of the declared numpy range (pyproject: numpy>=1.24,<3; .venv has numpy 2): the decoding tests in
# a second venv with numpy 1.x, sfi installed into it the same way.
NUMPY1_VENV ?= .venv-numpy1
test-numpy1:
	$(PYTHON) -m venv $(NUMPY1_VENV)
	$(NUMPY1_VENV)/bin/python -m pip install --quiet -e '.[test]' 'numpy>=1.24,<2'
	$(NUMPY1_VENV)/bin/python -m pytest -q -m 'not kafka' tests/messages/test_fbschemas.py tests/messages/test_messages.py \
	    tests/simulate/test_writer_answers.py

# The lower ends of every declared runtime range (pyproject [project] dependencies): sfi installed into a second venv
# with each dependency at the lowest version pyproject allows, and a fast subset run there: the CLI (typer's
# converter seam, rich), the SciCat client and test server (pyscicat, requests), NeXus reading and writing (h5py,
# numpy 1.x), the mapping and config (PyYAML), previews (matplotlib), decoding (ess-streaming-data-types) and
# reading a real broker (confluent-kafka). Raise a bound here together with pyproject.
MIN_VENV ?= .venv-min
MIN_VERSIONS = typer==0.29.0 rich==13.8.0 confluent-kafka==2.3.0 ess-streaming-data-types==0.27.0 \
    pyscicat==0.4.8 h5py==3.9.0 PyYAML==6.0 numpy==1.24.0 matplotlib==3.8.4
test-min:
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet -e '.[test]' $(MIN_VERSIONS)
	$(MIN_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(typer|rich|confluent.kafka|ess.streaming.data.types|pyscicat|h5py|pyyaml|numpy|matplotlib)=='
	$(MIN_VENV)/bin/python -m pytest -q -n 2 -p no:cacheprovider tests/cli/test_cli.py tests/scicat/test_scicat_client.py \
	    tests/nexus tests/mapping/test_mapping.py tests/mapping/test_profile_import.py tests/test_config.py \
	    tests/preview/test_preview.py tests/messages/test_messages.py tests/simulate/test_writer_answers.py

bench: $(STAMP)
	$(BIN)/python -m bench

# Issue 18's acceptance, ~15 min: two listeners as two hosts, 300 jobs, 4 partitions, 8 kill -9 during late-stored
# and lost datablock POSTs, admin and non-admin accounts, SciCat 5.1.0 and 4.5.0 (bench/soak_failover.py).
soak: $(STAMP)
	$(BIN)/python -m bench.soak_failover

clean:
	rm -rf $(VENV) $(NUMPY1_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
