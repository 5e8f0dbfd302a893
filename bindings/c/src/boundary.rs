//! The boundary between C and Rust, without unsafe code: the status codes,
//! the thread's last error message, and the panic guard every exported
//! function runs its body in.

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::panic::{AssertUnwindSafe, catch_unwind};

#[path = "../../common.rs"]
pub(crate) mod common;

use common::RevError;

/// What a call did. Anything but `Ok` and `End` is a failure whose
/// message `vst_last_error` gives.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VstStatus {
    /// Success.
    Ok = 0,
    /// `vst_diff_next`: no more changes (not a failure).
    End = 1,
    /// A NULL pointer, text that is not UTF-8, or a path that breaks
    /// vst's naming rules.
    InvalidArgument = 2,
    /// No such file or directory in the tree.
    NotFound = 3,
    /// The revision names no commit.
    BadRevision = 4,
    /// The branch moved since the working set was read (another writer):
    /// nothing was published.
    Conflict = 5,
    /// Any other error of the library (I/O, a damaged store, a limit).
    Error = 6,
    /// vst panicked: a bug. The handles used in the call may be
    /// half-changed and should be freed.
    Panic = 7,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A required pointer argument was NULL.
    #[error("{what} is NULL")]
    Null {
        /// The argument.
        what: &'static str,
    },
    /// Text that must be UTF-8 was not.
    #[error("{what} is not UTF-8")]
    NotUtf8 {
        /// The argument.
        what: &'static str,
    },
    /// A path that breaks vst's naming rules.
    #[error("invalid path {path:?}: {source}")]
    Path {
        /// The path, lossily.
        path: String,
        /// The rule it breaks.
        source: vst::InvalidName,
    },
    /// A revision that names no commit, or reading one failed.
    #[error(transparent)]
    Rev(#[from] RevError),
    /// The library's error.
    #[error(transparent)]
    Vst(#[from] vst::Error),
}

impl Error {
    fn status(&self) -> VstStatus {
        match self {
            Error::Null { .. } | Error::NotUtf8 { .. } | Error::Path { .. } => {
                VstStatus::InvalidArgument
            }
            Error::Rev(RevError::Vst(e)) | Error::Vst(e) => vst_status(e),
            Error::Rev(_) => VstStatus::BadRevision,
        }
    }
}

fn vst_status(e: &vst::Error) -> VstStatus {
    match e {
        vst::Error::NotFound { .. } => VstStatus::NotFound,
        vst::Error::Ref(vst_cas::RefError::Conflict { .. }) => VstStatus::Conflict,
        vst::Error::Ref(vst_cas::RefError::InvalidName { .. }) => VstStatus::InvalidArgument,
        vst::Error::NotADirectory { .. }
        | vst::Error::IsADirectory { .. }
        | vst::Error::NotAFile { .. }
        | vst::Error::Root { .. }
        | vst::Error::InvalidSymlink { .. }
        | vst::Error::InvalidCommit(_) => VstStatus::InvalidArgument,
        _ => VstStatus::Error,
    }
}

thread_local! {
    /// The message of the last call on this thread that failed.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error.
fn set_last_error(message: String) {
    // A NUL inside a message would end it early in C: drop them.
    let bytes: Vec<u8> = message.into_bytes().into_iter().filter(|b| *b != 0).collect();
    let text = CString::new(bytes).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

/// Calls `f` with this thread's last error message (empty if no call
/// failed yet).
pub(crate) fn with_last_error<T>(f: impl FnOnce(&CStr) -> T) -> T {
    LAST_ERROR.with(|last| f(&last.borrow()))
}

/// Runs the body of an exported function: its error becomes a status and
/// the thread's last error, and so does a panic, which must never unwind
/// into C (undefined behaviour).
pub(crate) fn guard(body: impl FnOnce() -> Result<VstStatus, Error>) -> VstStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            let status = e.status();
            set_last_error(common::message(&e));
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            set_last_error(format!("vst panicked (a bug): {what}"));
            VstStatus::Panic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, VstStatus::Panic);
        with_last_error(|m| assert_eq!(m.to_str(), Ok("vst panicked (a bug): boom")));
        let status = guard(|| Err(Error::Null { what: "repo" }));
        assert_eq!(status, VstStatus::InvalidArgument);
        with_last_error(|m| assert_eq!(m.to_str(), Ok("repo is NULL")));
    }
}
