#!/bin/sh
# Build every berth binary into target/<profile>/:
#   berth, berth-runtime   the engine and the OCI runtime (cargo build)
#   berth-init             the PID 1 of `run --init`, linked statically so it
#                          runs inside any image (its own small workspace)
#
# usage: ./build.sh [--release]      env: CARGO_TARGET_DIR (default ./target)
set -eu
cd "$(dirname "$0")"
profile_flag=""
case "${1:-}" in
    --release) profile_flag="--release" ;;
    "") ;;
    *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --workspace --bins $profile_flag
cargo rustc --manifest-path init/Cargo.toml --bin berth-init $profile_flag \
    --target-dir "$target_dir" -- -C target-feature=+crt-static
