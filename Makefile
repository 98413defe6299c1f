# The README's two commands: `make demo` and `make test`. Both install what they need first.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv/bin
# Three xdist workers on CI's two cores: the suite waits on paced streams and browsers most of the
# time (~1.2 cores busy on average); a fresh clone's make test took 10:49 with 3, 13:51 with 2.
PYTEST_ARGS ?= -n 3 --dist loadfile --durations=25

.PHONY: help setup demo test lint types docs pytest lowest bench tox clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## install everything: .venv, Debian's chromium and redis-server, npm packages
	@scripts/bootstrap.sh all

demo:  ## run the embedded gateway and the demo apps, printing the URLs to open
	@scripts/bootstrap.sh python
	@$(VENV)/python scripts/demo.py

test: setup lint types docs  ## install, then lint, type-check, build the docs and run every test (and again at the lowest versions)
	@# The lowest-direct venvs are resolved and synced while the main suite runs (mostly downloads).
	@$(VENV)/python scripts/lowest_direct.py prepare >.venv-lowest.log 2>&1 & prep=$$!; \
	$(MAKE) --no-print-directory pytest; rc=$$?; \
	if ! wait $$prep; then cat .venv-lowest.log >&2; echo "error: preparing the lowest-direct venvs failed" >&2; exit 1; fi; \
	cat .venv-lowest.log; [ $$rc -eq 0 ] || exit $$rc; \
	$(VENV)/python scripts/lowest_direct.py test

lint:  ## ruff over everything
	@scripts/bootstrap.sh python
	$(VENV)/ruff check .

types:  ## mypy --strict over core and the three integrations
	@scripts/bootstrap.sh python
	$(VENV)/mypy

docs:  ## the guide and API reference site (mkdocs build --strict: a warning fails it) into .site/
	@scripts/bootstrap.sh python
	NO_MKDOCS_2_WARNING=1 $(VENV)/mkdocs build --strict --quiet

lowest:  ## each package's tests with its direct dependencies at their lowest declared versions
	@scripts/bootstrap.sh python
	$(VENV)/python scripts/lowest_direct.py all

pytest:  ## the test suite; "no tests ran" (exit 5) is a failure
	@$(VENV)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

browser:  ## link core's browser module into the Django and Streamlit packages, vendor the widget's Markdown libraries (`make test` checks both)
	@scripts/bootstrap.sh python
	$(VENV)/python scripts/sync_browser.py

bench:  ## run every benchmark and write benchmarks/RESULTS.md
	@scripts/bootstrap.sh all
	$(VENV)/python benchmarks/run_all.py

tox:  ## each package's tests in an env with only its own dependencies
	@scripts/bootstrap.sh python
	$(VENV)/tox run-parallel

clean:  ## remove caches and the virtualenv
	rm -rf .venv .venv-lowest .venv-lowest.log .site .tox .pytest_cache .mypy_cache .ruff_cache tests/node/node_modules
