//! Facts about the caller that the edge passes upstream: IP address and user
//! agent, trusted only from configured proxies.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use ipnet::IpNet;

use crate::server::{CLIENT_IP_HEADER, CLIENT_USER_AGENT_HEADER};

/// The unit a client address is rate-limited by: the address for IPv4, its
/// /64 for IPv6 (one subscriber commonly holds a whole /64, so limiting per
/// address would give it 2^64 buckets).
pub fn rate_limit_unit(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

/// Who the caller is, network-wise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The caller's address: the peer's, or the one a trusted proxy reports.
    pub ip: Option<IpAddr>,
    /// The caller's user agent.
    pub user_agent: String,
}

/// Reads the caller's address and user agent from a request, believing the
/// gateway's `x-metrix-client-ip` only when the peer is in `trusted_proxies`.
pub fn client_info<T>(request: &tonic::Request<T>, trusted_proxies: &[IpNet]) -> ClientInfo {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let metadata = request.metadata();
    let forwarded = || {
        metadata
            .get(CLIENT_IP_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok())
    };
    let trusted = peer.is_some_and(|peer| trusted_proxies.iter().any(|network| network.contains(&peer)));
    let ip = if trusted { forwarded().or(peer) } else { peer };
    let user_agent_key = if trusted && metadata.contains_key(CLIENT_USER_AGENT_HEADER) {
        CLIENT_USER_AGENT_HEADER
    } else {
        "user-agent"
    };
    let user_agent = metadata
        .get(user_agent_key)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    ClientInfo {
        ip,
        user_agent: user_agent.chars().take(512).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: Option<&str>) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        if let Some(forwarded) = forwarded {
            request
                .metadata_mut()
                .insert(CLIENT_IP_HEADER, forwarded.parse().unwrap());
        }
        request
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let from_proxy = client_info(&request("10.1.2.3:5000", Some("203.0.113.9")), &trusted);
        assert_eq!(from_proxy.ip, Some("203.0.113.9".parse().unwrap()));
        let spoofed = client_info(&request("198.51.100.7:5000", Some("203.0.113.9")), &trusted);
        assert_eq!(spoofed.ip, Some("198.51.100.7".parse().unwrap()));
    }
}
