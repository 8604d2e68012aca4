# ugc: two commands on a fresh Debian machine.
#   make demo   install what is missing, build, start the all-in-one server
#   make test   everything CI runs
#   make cluster-demo   the same as separate control, publish, transcode
#               and origin servers on this machine
#
# Build output and tools stay outside the clone so CI reuses them.

SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/ugc
export CARGO_TARGET_DIR ?= $(CACHE)/target
# pkg-config through scripts/pkg-config-ffmpeg (.cargo/config.toml says
# why), copied to a path outside the clone: the config's own value is the
# clone's path, and cargo rebuilds every -sys crate whose build script
# watches PKG_CONFIG (aws-lc-sys, rusty_ffmpeg's bindgen) and all that
# depends on them whenever that value changes, i.e. on every fresh clone
# (measured: 80 s of the fuzz smoke's build alone). The environment's value
# wins over the config's; plain `cargo` in a clone still works.
export PKG_CONFIG := $(CACHE)/bin/pkg-config-ffmpeg
$(shell mkdir -p $(CACHE)/bin && { cmp -s scripts/pkg-config-ffmpeg $(PKG_CONFIG) || install -m 0755 scripts/pkg-config-ffmpeg $(PKG_CONFIG); })
# The smoke in `make test` is a regression run: a fixed seed over the
# repo's corpus, so a red CI means a change broke something, not that this
# run's dice found an old bug; one target per core at a time
# (scripts/fuzz-smoke.sh). Random exploration is `make fuzz-campaign`.
FUZZ_SECONDS ?= 8
FUZZ_SEED ?= 1
FUZZ_TARGETS := rtmp_handshake rtmp_session amf0 flv_tag avcc_sps aac_asc play_token ts_demux srt_streamid srt_listener srt_caller whip_session origin_query qoe_beacon dvr_request dvr_export relay_reader dvr_listing
DATA ?= $(CURDIR)/data
CARGO ?= cargo

.PHONY: demo cluster-demo test deps build build-web lint unit browser browser-hls-js fuzz-smoke fuzz-campaign chaos bench bench-criterion bench-load bench-transcode bench-ll-hls clean-data

deps:
	@scripts/install-deps.sh

build:
	$(CARGO) build --release -p ugc-server

# Web panels: npm ci (pinned hls.js, playwright-core) and web/dist/hls.min.js.
build-web:
	@scripts/build-web.sh

demo: deps build build-web
	@mkdir -p "$(DATA)"
	$(CARGO_TARGET_DIR)/release/ugc-server --data "$(DATA)" --web "$(CURDIR)/web" \
	  --demo-stream demo $(DEMO_FLAGS)

# Control + publish + transcode + origin, one process each, on this
# machine (scripts/cluster-demo.sh; ports 8080-8083, 1935, 9000).
cluster-demo: deps build build-web
	@DATA="$(DATA)" scripts/cluster-demo.sh

test: deps lint unit browser browser-hls-js fuzz-smoke
	@echo "make test: all green"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Unit, property, doc and end-to-end tests (the e2e tests drive real ffmpeg
# publishers and ffprobe/ffmpeg players against the built ugc-server).
# cargo-nextest runs them one process a test, UNIT_JOBS at a time across
# all test binaries (cargo test runs binaries one after another, two tests
# at a time within each, so a binary's one long test left a core idle:
# 826 s there, 691 s here); .config/nextest.toml. Doc tests are cargo's.
UNIT_JOBS ?= 2
unit:
	@scripts/install-deps.sh s3 nextest
	$(CARGO) nextest run --workspace --locked -j $(UNIT_JOBS)
	$(CARGO) test --workspace --locked --doc

# The web panels in headless Chromium (playwright-core), against the built
# server and a real ffmpeg publisher.
browser: build-web
	@scripts/install-deps.sh browser
	# The same feature set as `make unit` (workspace-wide), so after it this
	# builds nothing and the binary is the one the e2e tests ran.
	$(CARGO) test --workspace --locked --no-run
	UGC_SERVER_BIN=$(CARGO_TARGET_DIR)/debug/ugc-server node web/tests/browser.mjs

# hls.js in headless Chromium (tests/browser/play.mjs), the #[ignore]d tests:
# it plays an LL-HLS stream published by ffmpeg for 20 s
# (examples/ugc-server/tests/e2e_ll_hls.rs), switches through every
# rendition of a transcoding ladder (e2e_transcode.rs) and plays through a
# main -> backup -> main failover, also while it switches renditions of a
# ladder (e2e_failover.rs); plays through an nginx edge, a transcoder
# kill, an origin's fallback and a balancing origin's redirect
# (e2e_roles.rs); Chromium publishes over WHIP (e2e_whip.rs).
browser-hls-js:
	@scripts/install-deps.sh browser
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	$(CARGO) test --workspace --locked --test e2e_ll_hls -- --ignored --test-threads=1
	$(CARGO) test --workspace --locked --test e2e_transcode -- --ignored
	$(CARGO) test --workspace --locked --test e2e_failover -- --ignored
	$(CARGO) test --workspace --locked --test e2e_roles hls_js -- --ignored --test-threads=1
	$(CARGO) test --workspace --locked --test e2e_whip -- --ignored --skip chaos_ --test-threads=1

fuzz-smoke:
	@scripts/install-deps.sh fuzz
	@CACHE=$(CACHE) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SEED=$(FUZZ_SEED) \
	  scripts/fuzz-smoke.sh $(FUZZ_TARGETS)

# Every fuzz target for 10 million executions or an hour (RUNS=,
# SECONDS_EACH=), random seeds; new coverage is merged into fuzz/corpus.
fuzz-campaign:
	@scripts/install-deps.sh fuzz
	scripts/fuzz-campaign.sh $(FUZZ_TARGETS)

# Long failure runs kept out of `make test` (each test's name starts with
# chaos_; ignored there): an origin down 60 s mid-event restoring its
# archive from the other; random media nodes killed every 20 s for 3
# minutes while four streams publish and hls.js plays; Chromium publishing
# over WHIP through 3 % loss and 50 ms each way (figures printed).
chaos: deps
	@scripts/install-deps.sh s3 browser
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	$(CARGO) test --workspace --locked -- --ignored --test-threads 1 --nocapture chaos_

bench: bench-criterion bench-load

bench-criterion:
	$(CARGO) bench -p ugc-benches -- --warm-up-time 1 --measurement-time 3

bench-load: build
	@scripts/install-deps.sh bench
	benches/load-vs-nginx.sh

# The ABR ladder vs the ffmpeg CLI (fps, CPU s per media s, PSNR/SSIM).
bench-transcode: deps
	benches/transcode-vs-ffmpeg.sh

# LL-HLS vs classic HLS vs nginx-rtmp HLS latency, and 1000-client fan-out.
bench-ll-hls: build
	@scripts/install-deps.sh bench browser
	benches/ll-hls-latency.sh

clean-data:
	rm -rf "$(DATA)"
