# What `make build` made, for the end-to-end and bench scripts, each
# overridable from the environment. Sourced with ROOT (the checkout) and
# PLUGIN_NAME (the plugin the script drives) set.
RUNNER=${RUNNER:-$ROOT/target/x86_64-unknown-linux-musl/release/guest-runner}
ATTACHE=${ATTACHE:-$ROOT/target/release/attache}
# Containers are signed with `make build`'s development key, which its
# trust file (read by attache and the runner) trusts.
DEV_KEY=${DEV_KEY:-$ROOT/target/dev-keys/dev.key}
export ATTACHE_TRUST=${ATTACHE_TRUST:-$ROOT/target/release/trust.toml}
PLUGIN=${PLUGIN:-${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip2/release/attache_plugin_${PLUGIN_NAME}.wasm}
