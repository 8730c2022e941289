# `make test` and `make bench` work on a fresh Debian 12 machine as root: they install the
# apt packages strata's tests and drivers need (quickly skipped when present), build .venv
# and run. See README.md. docker.io and podman are the bench's peers: the harness starts
# its own daemons, so the install must not start a system dockerd or containerd --
# Debian's policy-rc.d (exit 101: "action forbidden") is in place for the install's
# duration when the machine has none, and removed afterwards.

APT_PACKAGES := btrfs-progs xfsprogs e2fsprogs util-linux pkg-config \
	libbtrfsutil-dev busybox-static runc crun docker-registry apache2-utils gcc python3-dev python3-venv \
	skopeo fio libfuse3-dev fuse3 tini nftables iproute2 docker.io podman uidmap slirp4netns fuse-overlayfs
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DRIVER ?= all

.PHONY: test deps lint bench bench-regress notebook clean

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages: $$missing"; \
		policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=1; \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; status=$$?; \
		if [ -n "$$policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
		[ $$status -eq 0 ] || exit $$status; \
	fi
	@for m in loop fuse btrfs overlay xfs; do modprobe -q $$m 2>/dev/null || true; done

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

lint: $(BIN)/.installed
	$(BIN)/ruff check .

# pytest's own exit status decides; "no tests collected" (5) is a failure like any other.
test: deps $(BIN)/.installed lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The benchmark harness on the default workload (README "Benchmarks"); DRIVER=all compares
# every registered driver side by side. Results go to results/<timestamp>/.
bench: deps $(BIN)/.installed
	$(BIN)/bench run --driver $(DRIVER) $(BENCH_ARGS)

# Driver regression benchmarks: saved under .benchmarks/ and compared with the last saved run.
bench-regress: deps $(BIN)/.installed
	$(BIN)/pytest tests/benchmarks/test_bench_regress_drivers.py --benchmark-enable \
		--benchmark-autosave --benchmark-compare --benchmark-columns=median,iqr,rounds --benchmark-group-by=group

# notebooks/driver_comparison.ipynb executed headless against the newest results/<timestamp>/;
# the executed copy, figures included, is written beside those results (the source stays clean).
notebook: $(BIN)/.installed
	@latest=$$(ls -d results/*/ 2>/dev/null | sort | tail -1); \
	if [ -z "$$latest" ]; then echo "no results/*: run make bench first"; exit 1; fi; \
	cp notebooks/driver_comparison.ipynb "$$latest" && \
	STRATA_RESULTS="$$PWD/$$latest" $(BIN)/jupyter-execute --inplace "$${latest}driver_comparison.ipynb" && \
	echo "executed: $${latest}driver_comparison.ipynb"

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
