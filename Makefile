# lakeloop — the two commands a newcomer needs are `make run` and `make test`.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
PROJECT ?= examples/shop
LISTEN ?= 127.0.0.1:8080
PY := .venv/bin/python

.PHONY: setup build run test test-unit test-e2e test-slow bench fmt fmt-check sanitize clean

setup:
	@scripts/setup.sh

$(BUILD)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Starts the server on the embedded defaults with the example project and prints its URL.
run: build
	@scripts/run.sh $(PROJECT) $(LISTEN)

test: build
	@scripts/test.sh

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-e2e: build
	$(PY) -m pytest -q tests/e2e

# Long loops: many more kills, soak; then the unit tests under ThreadSanitizer (a separate
# build in build-thread; long: plan an hour on 2 cores).
test-slow: build
	LAKELOOP_SLOW=1 $(PY) -m pytest -q tests/e2e
	$(MAKE) sanitize SANITIZE=thread

# Every recorded scenario (bench/README.md); results land in bench/results/. The anchors (Feast,
# MLflow, BentoML, Evidently, xgboost) go into .venv-bench/ first (scripts/setup_bench.sh).
bench: build
	@scripts/setup_bench.sh
	$(PY) bench/run.py
	$(PY) bench/ingest.py --rows 24000000
	$(PY) bench/streams.py
	$(PY) bench/features.py

fmt:
	find src -name '*.h' -o -name '*.cc' | xargs clang-format -i

fmt-check:
	find src -name '*.h' -o -name '*.cc' | xargs clang-format --dry-run -Werror

# ASan+UBSan build of the unit tests (TSan: make sanitize SANITIZE=thread); CI runs it after
# `make test` (.ci/run). Any sanitizer report fails the run: UBSan halts on its first finding
# (it only prints by default), ASan/LSan exit non-zero, TSan exits 66 after reporting every
# race. SANITIZE_TARGETS narrows the build (e.g. SANITIZE_TARGETS=core_test) and then
# SANITIZE_TESTS (a ctest -R regex) must select only the tests of those targets.
SANITIZE ?= address,undefined
SANITIZE_BUILD = build-$(subst $(comma),-,$(SANITIZE))
SANITIZE_TARGETS ?=
SANITIZE_TESTS ?=
SANITIZER_ENV = UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	ASAN_OPTIONS=abort_on_error=0:detect_stack_use_after_return=0 \
	TSAN_OPTIONS=second_deadlock_stack=1
sanitize: setup
	cmake -S . -B $(SANITIZE_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLAKELOOP_SANITIZE=$(SANITIZE)
	cmake --build $(SANITIZE_BUILD) -j $(JOBS) $(if $(SANITIZE_TARGETS),--target $(SANITIZE_TARGETS))
	cd $(SANITIZE_BUILD) && $(SANITIZER_ENV) ctest --output-on-failure --no-tests=error \
		-j $(JOBS) --timeout 1800 $(if $(SANITIZE_TESTS),-R '$(SANITIZE_TESTS)')

comma := ,

clean:
	rm -rf $(BUILD)
