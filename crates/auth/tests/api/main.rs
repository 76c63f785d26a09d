//! The auth service's suite, run through the generated client against a real
//! server on port 0: once with SQLite and in-process backends, once with
//! PostgreSQL and Redis (each test with its own database and key prefix).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

mod helpers;

mod admin;
mod oauth;
mod security;
mod sessions;
mod sign_up;
mod tokens;
