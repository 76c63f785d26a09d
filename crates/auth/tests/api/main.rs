//! The auth service's suite, run through the generated client against a real
//! server on port 0: once with SQLite and in-process backends, once with
//! PostgreSQL and Redis (each test with its own database and key prefix).

mod helpers;

mod admin;
mod oauth;
mod security;
mod sessions;
mod sign_up;
mod tokens;
