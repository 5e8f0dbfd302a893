#!/usr/bin/env bash
# Commit and status in a writable mount against the CLI's scan-based
# commit on the local disk and against git, on the same generated tree.
#
#   benches/wmount.sh [FILES]        (default 100000; needs root or fusermount3)
#
# For each of "touch 1 file", "touch 100 files" (one in each of 100
# directories) and "touch 100 files in one directory" it times, end to
# end (process start included), `vst commit` inside the mount right after
# the touch, and reports the daemon-side time the commit's --json carries
# (`daemon_hash_us`: finalizing the files the settler had not yet,
# hashing the trees it had not prepared, and putting the trees into the
# store, before any sync; `daemon_total_us`: with the syncs of the store,
# the ref and the journal); then the same daemon-side time when the
# commit comes once the settler is done (every closed file hashed, the
# trees stored: what a commit costs after the content was hashed at
# close and the mount went quiet); then `vst commit` on the local disk (scan + index) and `git add
# -A && git commit` on the same tree; then `vst status` with no change.
# Each timed command starts after a `sync`, so that none pays for the
# writeback of what another wrote just before (git's index, say: on ext4
# an fsync waits for other files' dirty data in the same journal commit).
# Prints a markdown table (median of RUNS, and the range).
set -euo pipefail
cd "$(dirname "$0")/.."

FILES="${1:-100000}"
RUNS="${RUNS:-5}"
cargo build --release -q -p vst-cli
VST="$PWD/target/release/vst"
WORK="$(mktemp -d /tmp/vst-wmount-bench.XXXXXX)"
MNT="$WORK/mnt"
cleanup() {
    "$VST" umount "$MNT" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Times are read from bash's own clock (EPOCHREALTIME): no fork.
# The median of the numbers on stdin, and their range (this machine is a
# VM: single runs stray by milliseconds).
median() { sort -n | awk '{a[NR]=$1} END {printf "%s (%s to %s)", a[int((NR+1)/2)], a[1], a[NR]}'; }

# The tree: FILES files of 100 B to 4 KB in 2,000 directories (as the CLI's
# git comparison generates it).
python3 - "$WORK/tree" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
dirs = max(1, n // 50)
for i in range(n):
    d = os.path.join(root, f"d{i % dirs // 40}", f"e{i % dirs}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.txt"), "wb") as f:
        f.write(rng.randbytes(rng.randint(100, 4000)))
PY
cp -a "$WORK/tree" "$WORK/vst"
cp -a "$WORK/tree" "$WORK/git"
# The mount's repository is its own: a writable mount holds its store.
mkdir "$WORK/mrepo"
(cd "$WORK/vst" && "$VST" init -q && VST_AUTHOR=bench "$VST" commit -q -m base)
(cd "$WORK/mrepo" && "$VST" init -q && cp -a "$WORK/tree/." . && VST_AUTHOR=bench "$VST" commit -q -m base)
(cd "$WORK/git" && git init -q && git add -A && git -c user.name=b -c user.email=b@b commit -q -m base)
mkdir "$MNT"
(cd "$WORK/mrepo" && "$VST" mount --write --background -q "$MNT")

touch_files() { # DIR COUNT ROUND [one: all in one directory]
    local i n
    local dirs=$(( FILES / 50 > 0 ? FILES / 50 : 1 ))
    for ((i = 0; i < $2; i++)); do
        if [[ "${4:-}" == one ]]; then
            n=$(( ($3 % 7) * dirs + i ))
            echo "round $3 of new$n" >> "$1/d0/e0/new$n.txt"
        else
            n=$(( (i * 997 + $3 * 31) % FILES ))
            echo "round $3" >> "$1/d$(( n % dirs / 40 ))/e$(( n % dirs ))/f$n.txt"
        fi
    done
}
# Waits until the mount's settler has finalized every closed file (their
# overlays are gone), then past its quiet time (2 ms after a commit, up to
# 100 ms after stores without a commit between), after which it
# stores and syncs the changed trees.
settled() {
    while [[ -n "$(ls -A "$WORK/mrepo/.vst/mount/overlay")" ]]; do sleep 0.01; done
    sleep 0.3
}
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

row() { printf '| %s | %s |\n' "$1" "$2"; }
echo "| workload ($FILES files) | median of $RUNS |"
echo "|---|---:|"
for workload in 1 100 100-one-dir; do
    count=${workload%%-*}
    where=spread
    if [[ "$workload" == *one-dir ]]; then where=one; fi
    e2e=(); dhash=(); dtotal=(); shash=(); stotal=(); disk=(); git=()
    for ((r = 0; r < RUNS; r++)); do
        touch_files "$MNT" "$count" "$r" "$where"
        sync
        t0=${EPOCHREALTIME/./}
        VST_AUTHOR=bench "$VST" -C "$MNT" --json commit -m "r$r" > "$WORK/out.json"
        t1=${EPOCHREALTIME/./}
        e2e+=($(( t1 - t0 )))
        out=$(cat "$WORK/out.json")
        dhash+=("$(json_field "$out" daemon_hash_us)")
        dtotal+=("$(json_field "$out" daemon_total_us)")
        # The same touch, committed once the settler is done.
        touch_files "$MNT" "$count" "$(( r + 100 ))" "$where"
        settled
        out=$(VST_AUTHOR=bench "$VST" -C "$MNT" --json commit -m "s$r")
        shash+=("$(json_field "$out" daemon_hash_us)")
        stotal+=("$(json_field "$out" daemon_total_us)")
        touch_files "$WORK/vst" "$count" "$r" "$where"
        sync
        t0=${EPOCHREALTIME/./}
        VST_AUTHOR=bench "$VST" -C "$WORK/vst" -q commit -m "r$r" >/dev/null
        t1=${EPOCHREALTIME/./}
        disk+=($(( t1 - t0 )))
        touch_files "$WORK/git" "$count" "$r" "$where"
        sync
        t0=${EPOCHREALTIME/./}
        git -C "$WORK/git" add -A && git -C "$WORK/git" -c user.name=b -c user.email=b@b commit -q -m "r$r"
        t1=${EPOCHREALTIME/./}
        git+=($(( t1 - t0 )))
    done
    name="touch $count"
    if [[ $where == one ]]; then name+=" in one directory"; fi
    row "$name, \`vst commit\` in the mount, end to end" "$(printf '%s\n' "${e2e[@]}" | median) µs"
    row "$name, daemon: commit before syncs" "$(printf '%s\n' "${dhash[@]}" | median) µs"
    row "$name, daemon: whole commit (syncs included)" "$(printf '%s\n' "${dtotal[@]}" | median) µs"
    row "$name, daemon: commit before syncs, settler done" "$(printf '%s\n' "${shash[@]}" | median) µs"
    row "$name, daemon: whole commit, settler done" "$(printf '%s\n' "${stotal[@]}" | median) µs"
    row "$name, \`vst commit\` on local disk (scan)" "$(printf '%s\n' "${disk[@]}" | median) µs"
    row "$name, \`git add -A && git commit\`" "$(printf '%s\n' "${git[@]}" | median) µs"
done
st=()
for ((r = 0; r < RUNS; r++)); do
    sync
    t0=${EPOCHREALTIME/./}
    "$VST" -C "$MNT" -q status >/dev/null
    t1=${EPOCHREALTIME/./}
    st+=($(( t1 - t0 )))
done
ver=()
for ((r = 0; r < RUNS; r++)); do
    t0=${EPOCHREALTIME/./}
    "$VST" --version >/dev/null
    t1=${EPOCHREALTIME/./}
    ver+=($(( t1 - t0 )))
done
row "\`vst status\` in the mount, no change" "$(printf '%s\n' "${st[@]}" | median) µs"
row "\`vst --version\` (process start alone)" "$(printf '%s\n' "${ver[@]}" | median) µs"
