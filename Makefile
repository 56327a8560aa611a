# The README's two commands are `make hil` (the main job) and `make test`
# (the whole suite). Both bootstrap first; bootstrap is idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
TARGET ?= sim
PYTEST_ARGS ?=

.PHONY: bootstrap hil test firmware services bench clean

bootstrap:
	@bash scripts/bootstrap.sh

firmware: bootstrap
	@$(MAKE) -s -C firmware

# Main job: the HIL suite on the default simulator target, printing the readings.
hil: bootstrap firmware
	$(PY) -m pytest -m hil tests/hil --target $(TARGET) -p no:cacheprovider -rs --hil-show-readings $(PYTEST_ARGS)

# The whole test suite (unit, integration, HIL on the simulator, emulation where installed).
test: bootstrap firmware
	$(PY) -m pytest tests -p no:cacheprovider -rs -q $(PYTEST_ARGS)

bench: bootstrap
	$(PY) -m benchmarks

clean:
	rm -rf .hil-logs build firmware/build services/*/build
