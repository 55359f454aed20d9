SHELL := /bin/bash
# Two commands do everything on a fresh machine: `make run` (the main job) and `make test`.
# Both build the environment first (Python 3.10 venv from requirements.lock); `make install` builds only that.

VENV    ?= .venv
# python3.10 from PATH, else from pyenv's versions folder (pyenv shims refuse versions not selected).
PYTHON310 ?= $(shell for c in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 \
                 /usr/bin/python3.10; do "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' \
                 2>/dev/null && { echo "$$c"; break; }; done)
STAMP   := $(VENV)/.installed

# make run settings (see README): data source, preset, images per split, epochs, output folder, extra --set.
DATA    ?=
PRESET  ?= keras_io
LIMIT   ?=
EPOCHS  ?=
OUTPUT  ?= outputs
SET     ?=
STRICT  ?=
PYTEST_ARGS ?=
# make audit: pip-audit in its own venv (not in the lock: the TFX 1.16 pins stay as they are); AUDIT_ARGS e.g. -s osv
AUDIT_VENV ?= .venv-audit
AUDIT_ARGS ?=

.PHONY: install run check test audit

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON310)" || { echo "error: Python 3.10 not found on PATH or in ~/.pyenv/versions;" \
	    "install it (e.g. 'pyenv install 3.10.13') or pass PYTHON310=/path/to/python3.10" >&2; exit 1; }
	@echo "building $(VENV) with $(PYTHON310) from requirements.lock (about 2 minutes the first time)"
	$(PYTHON310) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip==24.2 2>&1 | grep -v 'is ignored' || true
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock 2>&1 | grep -v 'is ignored'; \
	    test $${PIPESTATUS[0]} -eq 0
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v 'is ignored'; \
	    test $${PIPESTATUS[0]} -eq 0
	@touch $@

run: $(STAMP)
	$(VENV)/bin/tokenlearner run $(if $(DATA),--data "$(DATA)") --preset $(PRESET) $(if $(LIMIT),--limit $(LIMIT)) \
	    $(if $(EPOCHS),--epochs $(EPOCHS)) --output "$(OUTPUT)" $(foreach s,$(SET),--set $(s)) \
	    $(if $(STRICT),--strict)

# The static type check: mypy over every package and bench/, as pyproject.toml's [tool.mypy] configures it; any
# error fails `make test` before a test runs.
check: $(STAMP)
	$(VENV)/bin/python -m mypy

# pytest exits 5 when it collects no tests: say so instead of failing with a puzzling code.
test: $(STAMP) check
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	    if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected"; exit 0; fi; exit $$rc

# Known vulnerabilities of requirements.lock (docs/security.md). --strict: a package the vulnerability service cannot
# look up fails the audit instead of passing unchecked.
audit:
	@test -x $(AUDIT_VENV)/bin/pip-audit || { python3 -m venv $(AUDIT_VENV) && \
	    $(AUDIT_VENV)/bin/python -m pip install -q --disable-pip-version-check pip-audit==2.10.1; }
	$(AUDIT_VENV)/bin/pip-audit -r requirements.lock --no-deps --disable-pip --strict --progress-spinner off \
	    $(AUDIT_ARGS)
