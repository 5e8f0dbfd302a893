//! What the end-to-end tests of `merge.rs` and `watch.rs` share: running
//! the `vst` binary in a directory.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `vst args` in `dir` (as author "tester").
pub fn vst(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vst"))
        .current_dir(dir)
        .env("VST_AUTHOR", "tester")
        .args(args)
        .output()
        .unwrap()
}

/// Runs `vst args` in `dir` and requires success; returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vst(dir, args);
    assert!(out.status.success(), "vst {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
