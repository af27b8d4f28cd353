# Two commands on a fresh machine with python3 and pip: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-core demo-openai test lint typecheck docs bench clean bench-external

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

test: $(STAMP) lint typecheck docs
	OPENAI_AGENTS_DISABLE_TRACING=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, offline and strict (a broken link or a missing API object fails); its code
# blocks run as tests in tests/docs.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir .site

bench: $(STAMP)
	$(BIN)/python -m bench.core
	OPENAI_AGENTS_DISABLE_TRACING=1 $(BIN)/python -m bench.openai_overhead
	$(BIN)/python -m bench.langgraph_overhead
	$(BIN)/python -m bench.analysis
	OPENAI_AGENTS_DISABLE_TRACING=1 $(BIN)/python -m bench.gauntlet

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
	rm -rf $(VENV) .headway .pytest_cache .mypy_cache .ruff_cache .site
