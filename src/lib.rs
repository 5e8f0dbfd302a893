//! Workspace root: owns the integration tests and benches.
