#!/usr/bin/env bash
# A vst mount against the same tree on local disk and against squashfuse
# serving a squashfs image of it, in the same run, as ratios.
#
#   bash benches/mount_vs_disk.sh [FILES]     (default 20000)
#
# Trees: a copy of this machine's Python standard library (without
# site-packages and __pycache__), and a generated one (FILES small files
# in nested directories, plus four 16 MiB files the store chunks).
# Workloads: `find` over the tree, and reading every file
# (`tar cf - . | cat`: tar skips reading when its archive is /dev/null
# itself). Each runs warm (after one untimed run) and cold (the kernel's
# caches dropped first, and each FUSE filesystem mounted afresh, so that
# its own caches are empty too). Each number is the median of three runs.
#
# Needs root (drop_caches, mounting), a release build of vst with the
# mount command (built here, or given as VST=...), squashfuse and squashfs-tools (installed
# here with apt-get if missing). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
files="${1:-20000}"
[ "$(id -u)" = 0 ] || { echo "run as root: drop_caches needs it" >&2; exit 1; }
# VST=path/to/vst uses that binary instead of building one.
if [ -z "${VST:-}" ]; then
    cargo build --release -q -p vst-cli
    VST="$PWD/target/release/vst"
fi
if ! "$VST" mount --help >/dev/null 2>&1; then
    echo "this vst has no mount command yet (wire cli/src/mount.rs into main.rs)" >&2
    exit 1
fi
if ! command -v squashfuse >/dev/null 2>&1 || ! command -v mksquashfs >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq squashfuse squashfs-tools >/dev/null
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/vst-mount-bench.XXXXXX")"
mounts=()
cleanup() {
    for m in "${mounts[@]}"; do
        mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
    done
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# Mount and unmount each kind at "$2" for tree "$1".
mount_vst() { "$VST" -C "$work/$1-vst" -q mount "$2" --rev HEAD --background; }
mount_squash() {
    squashfuse "$work/$1.sqfs" "$2"
    for _ in $(seq 200); do mountpoint -q "$2" && return; sleep 0.01; done
    echo "squashfuse did not mount $2" >&2; exit 1
}
umount_any() { fusermount3 -u "$1" 2>/dev/null || umount "$1"; }

# median_ms KIND TREE DIR TEMP -- CMD...: the median of three timed runs
# of CMD (which reads $DIR) in milliseconds. KIND is disk, vst or squash;
# TEMP is warm or cold.
median_ms() {
    local kind=$1 tree=$2 dir=$3 temp=$4; shift 5
    local t=()
    if [ "$temp" = warm ]; then
        [ "$kind" = disk ] || "mount_$kind" "$tree" "$dir"
        "$@" >/dev/null 2>&1
    fi
    for _ in 1 2 3; do
        if [ "$temp" = cold ]; then
            [ "$kind" = disk ] || "mount_$kind" "$tree" "$dir"
            drop
        fi
        local s; s=$(now); "$@" >/dev/null 2>&1; local e; e=$(now)
        t+=($(( (e - s) / 1000 )))
        if [ "$temp" = cold ] && [ "$kind" != disk ]; then umount_any "$dir"; fi
    done
    if [ "$temp" = warm ] && [ "$kind" != disk ]; then umount_any "$dir"; fi
    printf '%s\n' "${t[@]}" | sort -n | sed -n 2p | awk '{printf "%.1f", $1/1000}'
}

generate() {
    python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 10}", f"e{(i // 10) % 10}", f"f{(i // 100) % 50}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i}.txt"), "w") as f:
        f.write(f"line {i}\n" * (1 + i % 200))
big = os.path.join(root, "big")
os.makedirs(big, exist_ok=True)
for i in range(4):
    with open(os.path.join(big, f"blob{i}.bin"), "wb") as f:
        f.write(os.urandom(16 << 20))
PY
}

prepare() { # name source
    local name=$1 src=$2
    cp -a "$src" "$work/$name-disk"
    cp -a "$src" "$work/$name-vst"
    "$VST" -C "$work/$name-vst" init -q
    "$VST" -C "$work/$name-vst" commit -q -m bench
    # The image holds exactly what the commit does (not .vst).
    mksquashfs "$work/$name-disk" "$work/$name.sqfs" -comp zstd -noappend -quiet >/dev/null
    mkdir -p "$work/$name-mnt-vst" "$work/$name-mnt-squash"
    mounts+=("$work/$name-mnt-vst" "$work/$name-mnt-squash")
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

rows=()
run_tree() { # name
    local name=$1
    local n; n=$(find "$work/$name-disk" -type f | wc -l)
    local size; size=$(du -sh "$work/$name-disk" | cut -f1)
    for workload in find read; do
        for temp in warm cold; do
            local d v s
            for kind in disk vst squash; do
                local dir="$work/$name-mnt-$kind"
                [ "$kind" = disk ] && dir="$work/$name-disk"
                local cmd
                if [ "$workload" = find ]; then
                    cmd=(find "$dir")
                else
                    cmd=(sh -c "tar cf - -C '$dir' . | cat")
                fi
                local ms; ms=$(median_ms "$kind" "$name" "$dir" "$temp" -- "${cmd[@]}")
                case $kind in disk) d=$ms ;; vst) v=$ms ;; squash) s=$ms ;; esac
            done
            rows+=("| $name ($n files, $size) | $workload | $temp | $d | $v | $s | $(ratio "$v" "$d") | $(ratio "$v" "$s") |")
        done
    done
}

stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
mkdir "$work/src-python"
cp -a "$stdlib/." "$work/src-python/"
rm -rf "$work/src-python/site-packages"
find "$work/src-python" -name __pycache__ -type d -prune -exec rm -rf {} +
prepare python "$work/src-python"
generate "$work/src-generated" "$files"
prepare generated "$work/src-generated"
rm -rf "$work/src-python" "$work/src-generated"

run_tree python
run_tree generated

echo
echo "| tree | workload | cache | disk ms | vst ms | squashfuse ms | vst / disk | vst / squashfuse |"
echo "|---|---|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
