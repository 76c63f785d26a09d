//! The benchmark service's API, end to end through its gRPC client, on both
//! backends.

mod helpers;

mod benchmarks;
mod costs;
mod rankings;
mod reports;
mod sources;
