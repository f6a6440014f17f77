# Two commands on a fresh machine; each bootstraps the Python 3.10 venv from uv.lock first.
#   make demo   every app on generated data, end to end (tiny preset), then one table
#               (make demo APP=sensor-vibration runs one app)
#   make test   the whole test suite (what CI runs)
.PHONY: demo test bootstrap lint

VENV := .venv/bin

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/suite demo --workspace workspace $(if $(APP),--app $(APP))

test: bootstrap
	$(VENV)/python -m pytest -q

lint: bootstrap
	$(VENV)/python -m ruff check . && $(VENV)/python -m ruff format --check .
