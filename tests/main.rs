//! Integration tests, compiled as one binary.

mod checkout;
mod commit;
mod durability;
mod encoding;
mod gc;
mod model;
mod support;
