//! Fault injection: the synchronous and queued ingestion paths lose nothing
//! when PostgreSQL, Redis or the metrix process itself fails under load.
//!
//! Each test starts its own servers — a PostgreSQL cluster (`initdb` and
//! `pg_ctl`), a Redis server and a real `metrix dev` process — on free ports
//! in temporary folders, so tests run in parallel. It sends batches of
//! events with ids unique to the test, records what every event was
//! answered, injects a fault, and then checks the answers against the
//! `events` table by event id: everything answered ACCEPTED or QUEUED is
//! stored exactly once, nothing answered REJECTED is. A missing `initdb`,
//! `pg_ctl` or `redis-server` fails the suite; it never skips.
//!
//! A failing test lists every problem it found and prints the last lines of
//! each server's log; `TEST_LOG=1` prints the whole logs.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

mod bad_input;
mod client;
mod crashes;
mod harness;
mod load;
mod outages;
mod queue;
mod verify;
