#!/usr/bin/env bash
# vst's main job on a fresh machine: install the `vst` binary (into
# target/demo, not your home), then snapshot a small tree, change it,
# snapshot again, and check both out.
set -euo pipefail
cd "$(dirname "$0")"
cargo install --quiet --path cli --root target/demo --force
vst="$PWD/target/demo/bin/vst"
work="$(mktemp -d "${TMPDIR:-/tmp}/vst-demo.XXXXXX")"
echo "demo directory: $work"
mkdir -p "$work/project/src" && cd "$work/project"
for i in $(seq 1 200); do echo "fn f$i() {}" > "src/mod$i.rs"; done
printf '#!/bin/sh\necho build\n' > build.sh && chmod +x build.sh
ln -s src/mod1.rs main.rs
"$vst" init
"$vst" config user.name "vst demo" && "$vst" config user.email demo@example.com
"$vst" commit -m "first snapshot"
echo "fn changed() {}" > src/mod7.rs && rm src/mod9.rs
"$vst" status
"$vst" commit -m "second snapshot"
"$vst" log -n 2
"$vst" diff HEAD~1 HEAD --stat
"$vst" checkout HEAD~1 --into "$work/first"
"$vst" fsck --read-data
echo "the first snapshot is checked out in $work/first"
