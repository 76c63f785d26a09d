//! The benchmark service's API, end to end through its gRPC client, on both
//! backends.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

mod helpers;

mod benchmarks;
mod costs;
mod rankings;
mod reports;
mod sources;
