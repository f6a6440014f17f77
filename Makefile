# Two commands on a fresh machine; each bootstraps the Python 3.10 venv from uv.lock first.
#   make demo   every app on generated data, end to end (tiny preset), then one table
#               (make demo APP=sensor-vibration runs one app)
#   make test   the whole test suite (what CI runs); installs Debian's Chromium first, for
#               the run report's browser test (skipped, saying why, where it can't be had)
.PHONY: demo test bootstrap lint browser

VENV := .venv/bin

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/suite demo --workspace workspace $(if $(APP),--app $(APP))

browser:
	@scripts/browser.sh

# Two workers, one test file at a time each (module fixtures stay in one process): the
# suite's pipelines spend much of their time in single-threaded Python.
test: bootstrap browser
	$(VENV)/python -m pytest -q -n 2 --dist loadfile

lint: bootstrap
	$(VENV)/python -m ruff check . && $(VENV)/python -m ruff format --check .
