//! Integration tests, compiled as one binary.

mod checkout;
mod commit;
mod durability;
mod encoding;
mod gc;
mod hostile;
mod merge;
mod model;
mod remote;
mod rev;
#[path = "../cas/tests/support/seaweed.rs"]
mod seaweed;
mod support;
mod watch;
mod worktree;
