//! What every Metrix service shares: typed configuration, telemetry, the
//! error table, the relational store, cache-like backends, token
//! verification and the server bootstrap.
//!
//! Nothing here knows any one service; services depend on this crate and on
//! the contract crate, never on each other.

pub mod authn;
pub mod cache;
pub mod client;
pub mod config;
pub mod error;
pub mod mac;
pub mod notices;
pub mod page_token;
pub mod period;
pub mod reference;
pub mod server;
pub mod storage;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
