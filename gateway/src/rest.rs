//! REST JSON, transcoded generically: every RPC with a `google.api.http`
//! annotation in the descriptor set becomes a route, and bodies convert with
//! the canonical proto3 JSON mapping through dynamic messages. Adding an
//! annotated RPC to `proto/` exposes it here with no gateway code.

pub mod encoding;
pub mod handler;
pub mod routes;
pub mod template;
pub mod transcode;

pub use self::routes::{BodyRule, Route, RouteMatch, RouteTable};
