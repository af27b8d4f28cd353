# Two commands on a fresh machine with python3 and pip: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-core demo-openai test test-compiled compiled lint typecheck docs bench clean bench-external

# One pip call installs all packages editable plus the dev tools; re-run only when a pyproject changes.
$(STAMP): pyproject.toml packages/core/pyproject.toml packages/langgraph_adapter/pyproject.toml packages/openai_adapter/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet \
		-e "packages/core[yaml]" -e packages/langgraph_adapter -e packages/openai_adapter --group dev --group docs
	touch $(STAMP)

# The main job: the LangGraph support-desk agent (scripted model, offline) through six scenarios.
demo: $(STAMP)
	$(BIN)/python -m examples.langgraph_support_desk

demo-core: $(STAMP)
	$(BIN)/python -m examples.support_desk.core_demo

demo-openai: $(STAMP)
	OPENAI_AGENTS_DISABLE_TRACING=1 $(BIN)/python -m examples.openai_support_desk

# The suite runs twice: on the source (pure Python) and on the compiled wheel users install (mypyc).
test: $(STAMP) lint typecheck docs
	OPENAI_AGENTS_DISABLE_TRACING=1 $(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-compiled

# The compiled wheel as released (packages/core/hatch_build.py), unpacked where PYTHONPATH puts it ahead
# of the editable source. It needs a C compiler and Python's headers; without them the compiled leg is
# skipped with a notice, unless HEADWAY_REQUIRE_COMPILED=1 (CI) makes that an error.
COMPILED := build/compiled
$(COMPILED)/.built: $(STAMP) packages/core/pyproject.toml packages/core/hatch_build.py $(wildcard packages/core/src/headway/*.py)
	rm -rf $(COMPILED) build/wheels
	HATCH_BUILD_HOOK_ENABLE_CUSTOM=1 $(BIN)/python -m pip wheel --quiet --no-deps packages/core -w build/wheels
	$(BIN)/python -m zipfile -e build/wheels/headway-*.whl $(COMPILED)
	touch $@

compiled: $(STAMP)
	@if $(BIN)/python bench/_can_compile.py; then $(MAKE) --no-print-directory $(COMPILED)/.built; \
	elif [ -n "$$HEADWAY_REQUIRE_COMPILED" ]; then echo "no C compiler or Python headers: cannot build the compiled wheel" >&2; exit 1; \
	else echo "skipping the compiled build: no C compiler or Python headers (pure Python only)"; fi

test-compiled: compiled
	@if [ -f $(COMPILED)/.built ]; then \
	OPENAI_AGENTS_DISABLE_TRACING=1 PYTHONPATH=$(COMPILED) $(BIN)/python -m pytest -q -p no:cacheprovider; fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, offline and strict (a broken link or a missing API object fails); its code
# blocks run as tests in tests/docs.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir .site

# Measured on the compiled wheel, as users install it (falls back to the source without a compiler);
# `python -m bench.core` alone measures the pure-Python source.
bench: compiled
	PYTHONPATH=$(COMPILED) $(BIN)/python -m bench.core
	OPENAI_AGENTS_DISABLE_TRACING=1 PYTHONPATH=$(COMPILED) $(BIN)/python -m bench.openai_overhead
	PYTHONPATH=$(COMPILED) $(BIN)/python -m bench.langgraph_overhead
	PYTHONPATH=$(COMPILED) $(BIN)/python -m bench.analysis
	OPENAI_AGENTS_DISABLE_TRACING=1 PYTHONPATH=$(COMPILED) $(BIN)/python -m bench.gauntlet

# AgentDojo replayed through headway, and headway beside LangChain's middleware, the Agents SDK's
# guardrails and invariant-ai; offline, results in bench/*_results.md. Not part of `make test` or CI.
# invariant-ai pins openai<2, which openai-agents (openai>=3) cannot share: it is installed without its
# dependencies, and the bench group carries the ones its local rule engine imports.
bench-external: $(STAMP)
	$(BIN)/python -m pip install --quiet --group bench
	$(BIN)/python -m pip install --quiet --no-deps "invariant-ai==0.3.5"
	$(BIN)/python -m bench.agentdojo_replay
	OPENAI_AGENTS_DISABLE_TRACING=1 $(BIN)/python -m bench.peers

clean:
	rm -rf $(VENV) .headway .pytest_cache .mypy_cache .ruff_cache .site build
