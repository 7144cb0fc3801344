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

# Long loops: many more kills, soak.
test-slow: build
	LAKELOOP_SLOW=1 $(PY) -m pytest -q tests/e2e

# Every recorded scenario (bench/README.md); results land in bench/results/.
bench: build
	$(PY) bench/run.py
	$(PY) bench/ingest.py --rows 24000000
	$(PY) bench/streams.py

fmt:
	find src -name '*.h' -o -name '*.cc' | xargs clang-format -i

fmt-check:
	find src -name '*.h' -o -name '*.cc' | xargs clang-format --dry-run -Werror

# ASan+UBSan build of the unit tests (TSan: make sanitize SANITIZE=thread).
SANITIZE ?= address,undefined
sanitize: setup
	cmake -S . -B build-$(subst $(comma),-,$(SANITIZE)) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLAKELOOP_SANITIZE=$(SANITIZE)
	cmake --build build-$(subst $(comma),-,$(SANITIZE)) -j $(JOBS)
	cd build-$(subst $(comma),-,$(SANITIZE)) && ctest --output-on-failure -j $(JOBS)

comma := ,

clean:
	rm -rf $(BUILD)
