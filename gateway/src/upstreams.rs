//! The services behind the gateway, by gRPC service name.

use std::collections::HashMap;

use tonic::transport::{Channel, Endpoint};

use crate::settings::Upstream;

/// A lazily connected channel per upstream.
#[derive(Clone)]
pub struct Upstreams {
    by_prefix: Vec<(&'static str, &'static str, Channel)>,
}

impl Upstreams {
    /// Channels to every upstream; they connect on first use, so the gateway
    /// starts before (and survives) its upstreams.
    pub fn new(upstreams: &[Upstream]) -> Result<Self, tonic::transport::Error> {
        let by_prefix = upstreams
            .iter()
            .map(|upstream| {
                let endpoint = Endpoint::from_shared(upstream.url.clone())?
                    .connect_timeout(std::time::Duration::from_secs(2))
                    .tcp_nodelay(true)
                    .http2_adaptive_window(true);
                Ok((upstream.package_prefix, upstream.name, endpoint.connect_lazy()))
            })
            .collect::<Result<_, tonic::transport::Error>>()?;
        Ok(Self { by_prefix })
    }

    /// The channel and upstream name for a fully-qualified service name.
    pub fn for_service(&self, service: &str) -> Option<(&'static str, Channel)> {
        self.by_prefix
            .iter()
            .find(|(prefix, _, _)| service.starts_with(prefix))
            .map(|(_, name, channel)| (*name, channel.clone()))
    }

    /// Every upstream by name.
    pub fn all(&self) -> HashMap<&'static str, Channel> {
        self.by_prefix
            .iter()
            .map(|(_, name, channel)| (*name, channel.clone()))
            .collect()
    }
}
