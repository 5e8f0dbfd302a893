//! Link settings that make `vst` start faster on Linux.
//!
//! A build tool runs `vst` many times a second, and inside a writable mount
//! the process start is most of what `vst commit` costs (the daemon's part
//! is about 1 ms). Measured with `hyperfine -N 'vst --version'` on the
//! benchmark machine (a VM where `/bin/true` takes 0.7 ms): 1.7 ms as
//! Rust links it by default, 1.3 ms position-dependent, 1.2 ms without
//! `libgcc_s` as well.
//!
//! - `-no-pie`: as a position-independent executable, the dynamic loader
//!   applies some 24,000 relative relocations at every start and copies
//!   each page of `.data.rel.ro` they touch. Linked at a fixed address, the
//!   linker resolves them once. The code is still compiled
//!   position-independent; only the executable's own load address is no
//!   longer randomized (shared libraries' still are).
//! - `gcc_eh`: the unwinder linked in statically, so `libgcc_s.so` is not
//!   loaded at all (`--as-needed` drops it) and its constructor, which
//!   queries the CPU with `cpuid` (a trap to the hypervisor in a VM), does
//!   not run. Panics unwind as before.
//!
//! Only for Linux with glibc, linked dynamically: a `+crt-static` or musl
//! build is static already (and passes `-static-pie`, which `-no-pie`
//! would contradict). The mount daemon is this same binary, so it too
//! runs at a fixed address; a distribution that wants every executable
//! PIE can drop this file.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE").split(',').any(|f| f == "crt-static");
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && !static_crt
    {
        println!("cargo:rustc-link-arg-bins=-no-pie");
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
