#!/usr/bin/env bash
# Supply chain: licenses on an allow-list, bans (duplicates warn
# only), and sources (crates.io only; unknown registries and git denied), as
# configured in deny.toml. Installs cargo-deny from crates.io when it is not
# on PATH: that cold `cargo install` took 280 s on this 2-core machine; the
# check itself takes about 1 s.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so that CI does not move under us; bump deliberately.
CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "supply-chain: installing cargo-deny ${CARGO_DENY_VERSION} from crates.io"
  start=$SECONDS
  cargo install cargo-deny --locked --version "${CARGO_DENY_VERSION}"
  echo "supply-chain: cargo-deny installed in $((SECONDS - start))s"
fi
cargo deny --version

# advisories is left out on purpose: it needs the RustSec advisory database
# from GitHub, which this environment cannot reach.
cargo deny --locked check licenses bans sources
