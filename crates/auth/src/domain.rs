//! The auth service's domain types. Each has a `parse` that is the only way
//! in, so a value of the type is valid by construction; request messages are
//! turned into these at the service boundary.

use std::fmt;

use metrix_core::error::FieldViolation;
use secrecy::{ExposeSecret, SecretString};

/// An email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// The longest address accepted (RFC 5321's path limit).
    pub const MAX_LENGTH: usize = 254;

    /// Parses an address: one `@`, a plausible local part and a domain with a dot.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        let email = text.trim().to_lowercase();
        let invalid = |why: &str| FieldViolation::new(field, why);
        if email.is_empty() {
            return Err(invalid("is required"));
        }
        if email.len() > Self::MAX_LENGTH {
            return Err(invalid("must be at most 254 characters"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("must be an email address such as name@example.com"));
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|character| character.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(character));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .chars()
                        .all(|character| character.is_alphanumeric() || character == '-')
            });
        if !local_ok || !domain_ok {
            return Err(invalid("must be an email address such as name@example.com"));
        }
        Ok(Self(email))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A new password: 12 to 128 characters, not only whitespace.
pub struct NewPassword(SecretString);

impl NewPassword {
    /// The shortest password accepted (NIST SP 800-63B recommends at least 8;
    /// Metrix asks for more because accounts hold company financials).
    pub const MIN_CHARACTERS: usize = 12;
    /// The longest password accepted, bounding the hashing cost.
    pub const MAX_CHARACTERS: usize = 128;

    /// Parses a password chosen at sign-up.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        let characters = text.chars().count();
        if characters < Self::MIN_CHARACTERS {
            return Err(FieldViolation::new(field, "must be at least 12 characters"));
        }
        if characters > Self::MAX_CHARACTERS {
            return Err(FieldViolation::new(field, "must be at most 128 characters"));
        }
        if text.trim().is_empty() {
            return Err(FieldViolation::new(field, "must not be only whitespace"));
        }
        Ok(Self(SecretString::from(text.to_owned())))
    }

    /// The password.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A name shown to people: 1 to 100 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// The longest name accepted.
    pub const MAX_CHARACTERS: usize = 100;

    /// Parses a required name.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        let name = text.trim();
        if name.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        if name.chars().count() > Self::MAX_CHARACTERS {
            return Err(FieldViolation::new(field, "must be at most 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(FieldViolation::new(field, "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("email", "  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        assert_eq!(
            Email::parse("email", "first.last+tag@sub.example.io").unwrap().as_str(),
            "first.last+tag@sub.example.io"
        );
    }

    #[test]
    fn malformed_emails_name_the_field() {
        for text in [
            "",
            "not-an-email",
            "a@b",
            "@example.com",
            "a@.com",
            "a..b@example.com",
            "a@exa mple.com",
            "a@-x.com",
        ] {
            let violation = Email::parse("email", text).expect_err(text);
            assert_eq!(violation.field, "email", "{text}");
        }
    }

    #[test]
    fn passwords_have_bounds() {
        assert!(NewPassword::parse("password", "correct horse battery").is_ok());
        assert_eq!(
            NewPassword::parse("password", "short").err().unwrap().description,
            "must be at least 12 characters"
        );
        assert!(NewPassword::parse("password", &"x".repeat(129)).is_err());
        assert!(NewPassword::parse("password", &" ".repeat(20)).is_err());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("display_name", "  Ada  ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("display_name", "   ").is_err());
        assert!(DisplayName::parse("display_name", "a\u{0}b").is_err());
    }

    proptest! {
        #[test]
        fn parsed_emails_are_stable(local in "[a-z0-9]{1,20}", domain in "[a-z0-9]{1,20}", tld in "[a-z]{2,6}") {
            let text = format!("{local}@{domain}.{tld}");
            let email = Email::parse("email", &text).unwrap();
            prop_assert_eq!(Email::parse("email", email.as_str()).unwrap(), email.clone());
        }

        #[test]
        fn email_parsing_never_panics(text in ".{0,300}") {
            let _ = Email::parse("email", &text);
        }
    }
}
