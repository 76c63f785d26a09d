//! The metrics service's suite, run through the generated client against a
//! real server on port 0: once with SQLite, once with PostgreSQL (each test
//! with its own database). Callers' tokens and API keys come from a
//! stand-in issuer that the service trusts as it trusts the auth service.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

mod helpers;

mod companies;
mod csv_injection;
mod data_points;
mod events;
mod kpis;
mod peers;
mod profiles;
mod queue;
mod streams;
