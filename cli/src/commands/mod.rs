//! One module per command group; `main.rs` dispatches to them, and the
//! mount and remote commands (`mount.rs`, `remote.rs`) share what they
//! need from here and from `workspace.rs`, never from `main.rs`.

pub mod history;
pub mod maintenance;
pub mod merge;
pub mod refs;
pub mod worktree;
