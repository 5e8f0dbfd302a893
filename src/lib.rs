//! The workspace root package: it owns the integration tests (`tests/`),
//! the benchmarks (`benches/`) and the examples, and runs the README's
//! code as a doctest so that the tour there cannot go stale.

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
