#!/usr/bin/env bash
# vst with `vst watch` running against git, on generated trees of 50,000
# and 100,000 files, in the same run, as ratios.
#
#   bash benches/watch_vs_git.sh [FILES...]     (default 50000 100000)
#
# For each tree: status with no change, status after one change, commit of
# one changed file, commit of 100 changed files; vst without the watcher
# beside them. Each step runs five times; the median is reported. Needs
# git and a release build of vst (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(50000 100000)
cargo build --release -q -p vst-cli
VST="$PWD/target/release/vst"
work="$(mktemp -d "${TMPDIR:-/tmp}/vst-watch.XXXXXX")"
trap 'for d in "$work"/*-vst; do "$VST" -C "$d" watch --stop -q 2>/dev/null || true; done; rm -rf "$work"' EXIT
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@example.com
export RUNS=5 VST_AUTHOR=bench
. benches/lib.sh

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

run_size() { # files
    local n=$1
    local src="$work/src-$n" v="$work/$n-vst" g="$work/$n-git"
    generate "$src" "$n"
    cp -a "$src" "$v"; cp -a "$src" "$g"; rm -rf "$src"
    "$VST" -C "$v" init -q && "$VST" -C "$v" commit -q -m import
    git -C "$g" init -q && git -C "$g" add -A && git -C "$g" commit -q -m import
    local one; one=$(cd "$v" && find . -type f -not -path './.vst/*' -print -quit)
    local hundred; hundred=$(cd "$v" && find . -type f -not -path './.vst/*' | awk -v s="$(( n / 100 ))" '(NR - 1) % s == 0' | sed -n 1,100p | tr '\n' ' ')

    # Without the watcher first, for reference.
    SETUP=":"
    local ss; ss=$(median_ms "$VST" -C "$v" status)
    "$VST" -C "$v" watch --background -q
    local vs; vs=$(median_ms "$VST" -C "$v" status)
    local gs; gs=$(median_ms git -C "$g" status --porcelain)

    SETUP="echo \$RANDOM >> '$v/$one'"
    local v1; v1=$(median_ms "$VST" -C "$v" status)
    SETUP="echo \$RANDOM >> '$g/$one'"
    local g1; g1=$(median_ms git -C "$g" status --porcelain)

    SETUP="echo \$RANDOM >> '$v/$one'"
    local vo; vo=$(median_ms "$VST" -C "$v" commit -q -m one)
    SETUP="echo \$RANDOM >> '$g/$one'"
    local go; go=$(median_ms sh -c "git -C '$g' add -A && git -C '$g' commit -q -m one")

    SETUP="(cd '$v' && for f in $hundred; do echo \$RANDOM >> \$f; done)"
    local vh; vh=$(median_ms "$VST" -C "$v" commit -q -m hundred)
    SETUP="(cd '$g' && for f in $hundred; do echo \$RANDOM >> \$f; done)"
    local gh; gh=$(median_ms sh -c "git -C '$g' add -A && git -C '$g' commit -q -m hundred")
    "$VST" -C "$v" watch --stop -q
    SETUP="echo \$RANDOM >> '$v/$one'"
    local so; so=$(median_ms "$VST" -C "$v" commit -q -m one)

    echo
    echo "### $n files"
    echo
    echo "| step | vst, watched ms | git ms | vst / git | vst, scanning ms |"
    echo "|---|---:|---:|---:|---:|"
    echo "| status, no change | $vs | $gs | $(ratio "$vs" "$gs") | $ss |"
    echo "| status, one file changed | $v1 | $g1 | $(ratio "$v1" "$g1") | |"
    echo "| commit, one file changed | $vo | $go | $(ratio "$vo" "$go") | $so |"
    echo "| commit, 100 files changed | $vh | $gh | $(ratio "$vh" "$gh") | |"
    rm -rf "$v" "$g"
}

for n in "${sizes[@]}"; do run_size "$n"; done
echo
echo "git $(git --version | cut -d' ' -f3), $(nproc) cores, $(date -u +%Y-%m-%d)"
