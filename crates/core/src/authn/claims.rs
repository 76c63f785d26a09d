//! The claims of a Metrix access token, and the roles and scopes they carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Credential, Principal, TokenError};

/// What a caller may do within their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Records and reads their organisation's data.
    CompanyUser,
    /// A company user who also analyses benchmarks and imports data.
    Analyst,
    /// Manages users, keys, service accounts and the audit trail.
    Admin,
    /// A service account.
    Service,
}

impl Role {
    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::CompanyUser => "company_user",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// The contract's enum.
    pub fn to_proto(self) -> metrix_proto::auth::v1::Role {
        use metrix_proto::auth::v1::Role as Proto;
        match self {
            Role::CompanyUser => Proto::CompanyUser,
            Role::Analyst => Proto::Analyst,
            Role::Admin => Proto::Admin,
            Role::Service => Proto::Service,
        }
    }

    /// The role of the contract's enum; `None` for UNSPECIFIED.
    pub fn from_proto(role: metrix_proto::auth::v1::Role) -> Option<Self> {
        use metrix_proto::auth::v1::Role as Proto;
        match role {
            Proto::Unspecified => None,
            Proto::CompanyUser => Some(Role::CompanyUser),
            Proto::Analyst => Some(Role::Analyst),
            Proto::Admin => Some(Role::Admin),
            Proto::Service => Some(Role::Service),
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "company_user" => Ok(Role::CompanyUser),
            "analyst" => Ok(Role::Analyst),
            "admin" => Ok(Role::Admin),
            "service" => Ok(Role::Service),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// What an API key or a service token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Send product events.
    EventsWrite,
    /// State, on tracked events, the address and user agent of the person
    /// they are about (`context.ip`, `context.userAgent`): for a server that
    /// forwards its users' events, whose own address the edge sees.
    EventsForward,
    /// Record KPIs and data points.
    MetricsWrite,
    /// Read the organisation's data.
    Read,
    /// Read anonymised peer values across organisations (platform services only).
    PeersRead,
    /// Verify any organisation's API keys (platform services only).
    ApiKeysVerify,
    /// Rotate the platform's token signing keys (platform operators only).
    KeysRotate,
}

impl Scope {
    /// Scopes an organisation's admin may grant.
    pub const ORGANIZATION: [Scope; 4] = [
        Scope::EventsWrite,
        Scope::EventsForward,
        Scope::MetricsWrite,
        Scope::Read,
    ];

    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::EventsForward => "events:forward",
            Scope::MetricsWrite => "metrics:write",
            Scope::Read => "read",
            Scope::PeersRead => "peers:read",
            Scope::ApiKeysVerify => "api-keys:verify",
            Scope::KeysRotate => "keys:rotate",
        }
    }

    /// Parses a space- or comma-separated list.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
        let mut scopes: Vec<Scope> = text
            .split([' ', ','])
            .filter(|item| !item.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    /// The space-separated form used in tokens and storage.
    pub fn join(scopes: &[Scope]) -> String {
        scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>().join(" ")
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "events:write" => Ok(Scope::EventsWrite),
            "events:forward" => Ok(Scope::EventsForward),
            "metrics:write" => Ok(Scope::MetricsWrite),
            "read" => Ok(Scope::Read),
            "peers:read" => Ok(Scope::PeersRead),
            "api-keys:verify" => Ok(Scope::ApiKeysVerify),
            "keys:rotate" => Ok(Scope::KeysRotate),
            other => Err(format!("unknown scope {other:?}")),
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: a user id or a service account's client id.
    pub sub: String,
    /// Organisation.
    pub org: String,
    /// Role.
    pub role: Role,
    /// Session id of a user token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Space-separated scopes of a service token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
}

/// The claims as signed: [`AccessClaims`] and the subject's authorization
/// version. Only the issuer and the revocation check deal in the version, so
/// it stays out of the claims every handler reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedClaims {
    /// The claims handlers see.
    #[serde(flatten)]
    pub claims: AccessClaims,
    /// The subject's authorization version when the token was issued
    /// (`ver`); the auth service raises it whenever the subject's role or
    /// standing changes, and verifiers refuse tokens below the current one.
    /// Tokens issued before versions existed carry none, which reads as 0.
    #[serde(default)]
    pub ver: u64,
}

impl AccessClaims {
    /// The principal these claims describe.
    pub fn principal(&self) -> Result<Principal, TokenError> {
        let scopes = Scope::parse_list(&self.scope).map_err(|_| TokenError::Malformed)?;
        if self.org.is_empty() || self.sub.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(Principal {
            subject: self.sub.clone(),
            organization_id: self.org.clone(),
            role: self.role,
            scopes,
            credential: Credential::AccessToken {
                session_id: self.sid.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_sorted_and_deduplicated() {
        assert_eq!(
            Scope::parse_list("read events:write,read").unwrap(),
            vec![Scope::EventsWrite, Scope::Read]
        );
        assert!(Scope::parse_list("admin").is_err());
        assert_eq!(Scope::join(&[Scope::EventsWrite, Scope::Read]), "events:write read");
    }

    #[test]
    fn the_version_travels_beside_the_claims_and_defaults_to_zero() {
        let claims = AccessClaims {
            iss: "metrix".into(),
            aud: "metrix".into(),
            sub: "user-1".into(),
            org: "org-1".into(),
            role: Role::Admin,
            sid: Some("session-1".into()),
            scope: String::new(),
            iat: 1,
            nbf: 1,
            exp: 2,
            jti: "j".into(),
        };
        let signed = SignedClaims {
            claims: claims.clone(),
            ver: 4,
        };
        let json = serde_json::to_value(&signed).expect("serialises");
        assert_eq!(json["ver"], 4);
        assert_eq!(json["sid"], "session-1", "flat, as one JWT payload");
        let without_version = serde_json::to_string(&claims).expect("serialises");
        let read: SignedClaims = serde_json::from_str(&without_version).expect("deserialises");
        assert_eq!(read, SignedClaims { claims, ver: 0 });
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::CompanyUser, Role::Analyst, Role::Admin, Role::Service] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(Role::from_proto(role.to_proto()), Some(role));
        }
    }
}
