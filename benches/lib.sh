# Shared by the benchmark scripts that time vst against git: a clock, the
# median of runs, and the generated tree. Sourced, not run.

now() { date +%s%N; }
# median of $RUNS (default three) runs of "$@", in milliseconds (setup is
# in $SETUP, run before each)
median_ms() {
    local t=() runs="${RUNS:-3}"
    for _ in $(seq "$runs"); do
        eval "$SETUP"
        local s; s=$(now); "$@" >/dev/null 2>&1; local e; e=$(now)
        t+=($(( (e - s) / 1000 )))
    done
    printf '%s\n' "${t[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p" | awk '{printf "%.1f", $1/1000}'
}

generate() {
    # As in the issue: FILES files of 100 B to 4 KB in 2,000 leaf
    # directories under 20 top-level ones.
    python3 - "$1" "$2" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
for i in range(n):
    d = os.path.join(root, f"d{i % 20}", f"e{(i // 20) % 100}")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(100, 4096)
    with open(os.path.join(d, f"file{i}.txt"), "w") as f:
        f.write((f"line {i} " * (size // 8 + 1))[:size])
PY
}
