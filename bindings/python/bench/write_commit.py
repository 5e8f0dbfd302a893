"""The Python binding against the Rust bench `seed/write_commit/1000`
(benches/commit.rs): 1,000 files of 1 KiB of random bytes over four
directories, written with one `write_many` into an empty in-memory working
set, then committed. The files are made outside the timed code, as in the
Rust bench. Also the same work through a repository on disk (pack store,
branch moved, synced), for reference.

    python bench/write_commit.py [SAMPLES]
"""

import os
import random
import statistics
import sys
import tempfile
import time

import vst

N = 1000
FILE_LEN = 1024


def files():
    rng = random.Random(0x5EED + N)
    return [
        (f"src/d{i % 4}/file{i:05}.txt", rng.randbytes(FILE_LEN)) for i in range(N)
    ]


def measure(samples, setup, run):
    times = []
    for _ in range(samples):
        state = setup()
        start = time.perf_counter_ns()
        run(state)
        times.append(time.perf_counter_ns() - start)
    times.sort()
    return statistics.median(times), times[len(times) // 10], times[-1 - len(times) // 10]


def main():
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    batch = files()

    def in_memory(ws):
        ws.write_many(batch)
        ws.commit(message="bench", author="bench")

    median, p10, p90 = measure(samples, vst.WorkingSet, in_memory)
    print(f"in memory: write_many + commit of {N} x 1 KiB: median {median / 1e6:.3f} ms "
          f"(p10 {p10 / 1e6:.3f}, p90 {p90 / 1e6:.3f}; {samples} samples)")

    with tempfile.TemporaryDirectory() as d:
        repo = vst.Repo.init(d)
        count = [0]

        def fresh_branch():
            count[0] += 1
            return (repo.working_set(branch=f"b{count[0]}"), f"b{count[0]}")

        def on_disk(state):
            ws, branch = state
            ws.write_many(batch)
            repo.commit(ws, message="bench", author="bench", branch=branch)

        disk_samples = max(samples // 10, 10)
        median, p10, p90 = measure(disk_samples, fresh_branch, on_disk)
        print(f"repository on disk (synced): median {median / 1e6:.3f} ms "
              f"(p10 {p10 / 1e6:.3f}, p90 {p90 / 1e6:.3f}; {disk_samples} samples)")


if __name__ == "__main__":
    main()
