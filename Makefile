# Two commands from a fresh clone (only python3 and make needed): `make demo`, `make test`.
.PHONY: demo test lint bench format clean

VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed-%: pyproject.toml scripts/bootstrap.sh
	./scripts/bootstrap.sh $*
	touch $@

demo: $(VENV)/.installed-test
	$(VENV)/bin/asynccache demo

test: $(VENV)/.installed-test
	./scripts/ensure-redis.sh
	$(PY) -m pytest

lint: $(VENV)/.installed-lint
	$(VENV)/bin/ruff check asynccache tests benchmarks loadtests
	$(VENV)/bin/ruff format --check asynccache tests benchmarks loadtests
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-bench
	./scripts/ensure-redis.sh
	$(PY) benchmarks/run.py

format: $(VENV)/.installed-lint
	$(VENV)/bin/ruff format asynccache tests benchmarks loadtests
	$(VENV)/bin/ruff check --fix asynccache tests benchmarks loadtests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
