# hwdr: build and test entry points. `make test` is what CI runs.

CARGO ?= cargo
PYTHON ?= python3

.PHONY: all build release test fmt-check clippy unit sim-test e2e deps demo bench bench-build bench-s3 bench-sealing bench-durability bench-tls bench-compare bench-restore sandbox sandbox-down deb

all: build

build:
	$(CARGO) build --locked

release:
	$(CARGO) build --locked --release

# Everything: formatting, lints, unit and integration tests, simulator tests,
# and the end-to-end tests on real systemd in nspawn containers.
test: fmt-check clippy unit sim-test e2e

fmt-check:
	$(CARGO) fmt --all -- --check

# Both builds: the release one, and the tests' one with fault injection.
clippy:
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --workspace --all-targets --features failpoints -- -D warnings

# Unit tests (hwdr's and the testkit's generator) and the integration tests,
# one test binary tests/it/ (the built binary against temp dirs and the
# simulators). Tests that switch users need root. The binary is built with
# fault injection (feature `failpoints`, src/fault.rs) so the fault tests can
# kill or stop it at a chosen step.
unit:
	$(CARGO) test --locked --workspace --features failpoints -- --test-threads=4

sim-test:
	$(PYTHON) -m unittest discover -s tests/sim -p 'test_*.py'

# Real systemd in systemd-nspawn containers (see tests/e2e/README.md); the
# five-node test runs twice, the second time with the repository in Garage.
e2e: build deb
	$(CARGO) build --locked -p testkit --bin gen_datanodes
	$(PYTHON) -m unittest discover -s tests/e2e -p 'test_*.py' -v

# Garage, the real S3 server the tests start (testkit/src/garage/,
# tests/e2e/garage.py).
GARAGE_VERSION = 2.5.0
CARGO_BIN = $${CARGO_HOME:-$$HOME/.cargo}/bin

# Debian packages the tests and `make bench` need (run as root on a fresh
# Debian 12; rclone only for the benchmark's S3 part, restic and borgbackup
# only for its comparison, bench/compare.sh; prometheus for promtool, which
# checks packaging/prometheus/ in tests/it/monitoring.rs;
# man-db for the man pages' test, tests/it/docs.rs), and
# Garage from crates.io into ~/.cargo/bin (about 8 minutes on two cores with
# build-essential), unless the garage the tests find (PATH, then
# ~/.cargo/bin; or $HWDR_GARAGE) is that version already.
# Of prometheus only promtool is wanted: the server it enables is disabled
# (the e2e containers boot this host's image); without systemd running,
# --now cannot stop it and the plain disable removes the link.
deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		python3 passwd util-linux procps systemd systemd-container dbus rsync \
		build-essential debhelper dpkg-dev lintian faketime strace rclone time restic borgbackup \
		prometheus man-db
	systemctl disable --now prometheus.service 2>/dev/null || systemctl disable prometheus.service
	PATH="$$PATH:$(CARGO_BIN)" $${HWDR_GARAGE:-garage} --version 2>/dev/null | grep -q 'cargo:$(GARAGE_VERSION) ' || \
		$(CARGO) install garage --locked --version $(GARAGE_VERSION)

# The main job on this machine: a backup of a simulated five-node cluster.
demo: build
	bash tests/demo.sh

# The HopsFS backup benchmark (docs/benchmarks.md), as root: generates a few
# GiB and a million blocks on this disk, removes them; then its S3 part
# (bench-s3), encryption and compression (bench-sealing), TLS (bench-tls) and
# restore and verify vs raw dd (bench-restore). About 25 + 30 +
# 10 + 5 + 10 minutes. Variables (BENCH_DIR, UNIQUE_GIB, MEM_BLOCKS, S3_UNIQUE_GIB,
# SEAL_UNIQUE_GIB, ...): see bench/hopsfs.sh, bench/s3.sh, bench/sealing.sh and
# bench/restore.sh.
bench: bench-build
	bash bench/hopsfs.sh
	bash bench/s3.sh
	bash bench/sealing.sh
	bash bench/tls.sh
	bash bench/compare.sh
	bash bench/restore.sh

bench-build:
	$(CARGO) build --release --locked -p testkit --bin gen_datanodes
	$(CARGO) build --release --locked
	cp Cargo.lock bench/crc/Cargo.lock
	CARGO_TARGET_DIR=$(CURDIR)/target $(CARGO) build --release --offline --manifest-path bench/crc/Cargo.toml

# The S3 part alone (as root): hwdr backup, 1%-new backup and restore against
# a Garage on loopback vs rclone copy, and the agents' memory with 256 MiB
# blocks. Needs garage and rclone (make deps).
bench-s3:
	$(CARGO) build --release --locked -p testkit --bin gen_datanodes
	$(CARGO) build --release --locked
	bash bench/s3.sh

# Encryption and compression (as root): full backups and restores of a plain,
# an encrypted and an encrypted + compressed repository on the same
# generated data (incompressible and text blocks, 1.5 GiB unique each), CPU
# per GiB, compression ratios. About 10 minutes; SEAL_UNIQUE_GIB and
# SEAL_REPEAT scale it (bench/sealing.sh).
bench-sealing:
	$(CARGO) build --release --locked -p testkit --bin gen_datanodes
	$(CARGO) build --release --locked
	bash bench/sealing.sh

# What the block store's durability costs (full backups before and after
# issue 11, alternating) and how fast an interrupted backup stops, as root:
# a few GiB, about 15 minutes (the first run also builds the baseline).
bench-durability:
	$(CARGO) build --release --locked -p testkit --bin gen_datanodes
	$(CARGO) build --release --locked
	bash bench/durability.sh

# What mutual TLS costs a full backup: token vs mtls, alternating, on the
# same data (docs/benchmarks.md, "Mutual TLS"). About 5 minutes.
bench-tls: bench-build
	bash bench/tls.sh

# hwdr side by side with restic, borg and cp -a (as root; restic and
# borgbackup from make deps): full, 1%-new and nothing-new backups, restore
# and verify, on the same generated data, medians of 3 (bench/compare.sh;
# docs/benchmarks.md, "Side by side"). About 15 minutes at UNIQUE_GIB=4.
bench-compare: bench-build
	bash bench/compare.sh
# Restore and verify --full against raw dd writes and reads (issue 17;
# docs/benchmarks.md, "Restore and verify at disk speed"), as root: medians
# of REPEAT (3) rounds and max/min; BASELINE=<an older hwdr> alternates it
# with this tree's. About 10 minutes with UNIQUE_GIB=4 (bench/restore.sh).
bench-restore:
	$(CARGO) build --release --locked -p testkit --bin gen_datanodes
	$(CARGO) build --release --locked
	bash bench/restore.sh

# The Debian package (debian/): target/debian/hwdr_<version>_<arch>.deb with
# its .buildinfo and .changes, checked by lintian (errors fail). dpkg-buildpackage
# writes them beside this folder; they are moved here. Needs debhelper,
# dpkg-dev, build-essential and lintian.
deb:
	CARGO="$(CARGO)" dpkg-buildpackage -us -uc -b --post-clean
	mkdir -p target/debian
	v=$$(dpkg-parsechangelog -S Version) && a=$$(dpkg --print-architecture) && \
	mv ../hwdr_$${v}_$${a}.deb ../hwdr_$${v}_$${a}.buildinfo ../hwdr_$${v}_$${a}.changes target/debian/ && \
	lintian --fail-on error target/debian/hwdr_$${v}_$${a}.deb

# The simulated five-node cluster on real systemd, left running (as root on
# Debian 12), on 127.0.0.41-45 (the e2e tests' nodes are .31-35): runs
# `make deps build deb` itself, boots it, backs up through systemctl, drills,
# and says how to get a shell on a node. One line per phase on the terminal;
# the programs' output in /tmp/hwdr-sandbox.log (packaging/sandbox.py).
sandbox:
	@CARGO="$(CARGO)" $(PYTHON) packaging/sandbox.py up

sandbox-down:
	@$(PYTHON) packaging/sandbox.py down
