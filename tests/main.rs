//! Integration tests, compiled as one binary.

mod checkout;
mod commit;
mod durability;
mod encoding;
mod model;
mod support;
