#!/usr/bin/env bash
# vst against git on the same trees, in the same run, as ratios.
#
#   bash benches/cli_vs_git.sh [FILES]     (default 50000)
#
# Trees: a generated one (FILES files of 100 B to 4 KB in 2,000 directories) and a
# real one (a copy of this machine's Python standard library). For each:
# first import, commit with no change, commit after changing one file and
# after changing 100, status with no change, checkout into an empty
# directory. Each step runs
# three times; the median is reported. Needs git and a release build of vst
# (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
files="${1:-50000}"
cargo build --release -q -p vst-cli
VST="$PWD/target/release/vst"
work="$(mktemp -d "${TMPDIR:-/tmp}/vst-vs-git.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@example.com VST_AUTHOR=bench

. benches/lib.sh

run_tree() { # name source
    local name=$1 src=$2
    local v="$work/$name-vst" g="$work/$name-git"
    cp -a "$src" "$v"; cp -a "$src" "$g"
    local one; one=$(cd "$v" && find . -type f -print -quit)
    local n; n=$(cd "$v" && find . -type f | wc -l)

    SETUP="rm -rf '$v/.vst' && $VST -C '$v' init -q"
    local vi; vi=$(median_ms "$VST" -C "$v" commit -q -m import)
    SETUP="rm -rf '$g/.git' && git -C '$g' init -q"
    local gi; gi=$(median_ms sh -c "git -C '$g' add -A && git -C '$g' commit -q -m import")

    SETUP=":"
    local vn; vn=$(median_ms "$VST" -C "$v" commit -q -m none)
    local gn; gn=$(median_ms sh -c "git -C '$g' add -A && git -C '$g' commit -q -m none || true")

    SETUP="echo \$RANDOM >> '$v/$one'"
    local vo; vo=$(median_ms "$VST" -C "$v" commit -q -m one)
    SETUP="echo \$RANDOM >> '$g/$one'"
    local go; go=$(median_ms sh -c "git -C '$g' add -A && git -C '$g' commit -q -m one")

    local step=$(( n / 100 > 0 ? n / 100 : 1 ))
    local hundred; hundred=$(cd "$v" && find . -type f -not -path './.vst/*' | awk -v s="$step" '(NR - 1) % s == 0' | sed -n 1,100p | tr '\n' ' ')
    SETUP="(cd '$v' && for f in $hundred; do echo \$RANDOM >> \$f; done)"
    local vh; vh=$(median_ms "$VST" -C "$v" commit -q -m hundred)
    SETUP="(cd '$g' && for f in $hundred; do echo \$RANDOM >> \$f; done)"
    local gh; gh=$(median_ms sh -c "git -C '$g' add -A && git -C '$g' commit -q -m hundred")

    SETUP=":"
    local vs; vs=$(median_ms "$VST" -C "$v" status)
    local gs; gs=$(median_ms git -C "$g" status --porcelain)

    # Checkout: each run into a fresh directory, nothing deleted in between
    # (ext4 spends seconds of kernel time allocating inodes right after a
    # mass delete, which would decide the result), vst and git alternating.
    sync
    local tv=() tg=()
    for i in 1 2 3; do
        local s e
        s=$(now); "$VST" -C "$v" checkout HEAD --into "$work/$name-out-v$i" -q; e=$(now); tv+=($(( (e - s) / 1000 )))
        mkdir "$work/$name-out-g$i"
        s=$(now); git -C "$g" --work-tree="$work/$name-out-g$i" checkout HEAD -- . ; e=$(now); tg+=($(( (e - s) / 1000 )))
    done
    local vc gc
    vc=$(printf '%s\n' "${tv[@]}" | sort -n | sed -n 2p | awk '{printf "%.1f", $1/1000}')
    gc=$(printf '%s\n' "${tg[@]}" | sort -n | sed -n 2p | awk '{printf "%.1f", $1/1000}')

    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
    echo
    echo "### $name ($n files)"
    echo
    echo "| step | vst ms | git ms | vst / git |"
    echo "|---|---:|---:|---:|"
    echo "| first import | $vi | $gi | $(ratio "$vi" "$gi") |"
    echo "| commit, no change | $vn | $gn | $(ratio "$vn" "$gn") |"
    echo "| commit, one file changed | $vo | $go | $(ratio "$vo" "$go") |"
    echo "| commit, 100 files changed | $vh | $gh | $(ratio "$vh" "$gh") |"
    echo "| status, no change | $vs | $gs | $(ratio "$vs" "$gs") |"
    echo "| checkout into an empty directory | $vc | $gc | $(ratio "$vc" "$gc") |"
}

generate "$work/gen-src" "$files"
run_tree generated "$work/gen-src"
stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
mkdir -p "$work/py-src" && cp -a "$stdlib/." "$work/py-src/"
find "$work/py-src" -name __pycache__ -prune -exec rm -rf {} +
run_tree python-stdlib "$work/py-src"
echo
echo "git $(git --version | cut -d' ' -f3), $(nproc) cores, $(date -u +%Y-%m-%d)"
