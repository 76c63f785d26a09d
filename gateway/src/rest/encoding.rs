//! Compressed request bodies: `Content-Encoding: gzip`, as tracking SDKs
//! send their batches, on every REST route.
//!
//! A compressed body is first bounded like any other (the body limit counts
//! the bytes that arrive), then inflated with two more bounds against
//! compression bombs: the inflated body may not exceed the body limit
//! either, nor [`MAX_RATIO`] times the compressed size. Inflation stops at
//! the first byte past either bound, so a bomb costs at most the limit in
//! memory. Other codings are 415 with `Accept-Encoding: gzip` (RFC 7694).

use std::io::Read as _;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use metrix_core::error::FieldViolation;
use prost_reflect::DescriptorPool;
use tonic::Status;

use crate::edge::{Protocol, too_large};
use crate::errors::{invalid_request, status_response};

/// The most an inflated body may exceed its compressed size, as a factor.
/// JSON compresses about 5–20 times; a body past this is refused as a bomb.
pub const MAX_RATIO: usize = 100;

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A coding other than gzip (or identity).
    Unsupported(String),
    /// Not valid gzip.
    Corrupt(String),
    /// Inflated past the body limit.
    TooLarge {
        /// The body limit, in bytes.
        limit: usize,
    },
    /// Inflated past [`MAX_RATIO`] times its compressed size.
    Bomb {
        /// The compressed size, in bytes.
        compressed: usize,
    },
}

impl DecodeError {
    /// The REST answer: 415, 400 naming `body`, or 413.
    pub fn response(&self, pool: &DescriptorPool) -> Response {
        match self {
            DecodeError::Unsupported(coding) => {
                let status = Status::invalid_argument(format!(
                    "Content-Encoding {coding:?} is not supported; send the body as is or with gzip"
                ));
                let mut response = status_response(&status, pool);
                *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
                response
                    .headers_mut()
                    .insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
                response
            }
            DecodeError::Corrupt(reason) => invalid_request(
                vec![FieldViolation::new("body", format!("is not valid gzip: {reason}"))],
                pool,
            ),
            DecodeError::TooLarge { limit } => too_large(Protocol::Rest, *limit),
            DecodeError::Bomb { compressed } => invalid_request(
                vec![FieldViolation::new(
                    "body",
                    format!(
                        "inflates to more than {MAX_RATIO} times its {compressed} compressed bytes; send it less compressed"
                    ),
                )],
                pool,
            ),
        }
    }
}

/// The body as the transcoder reads it: inflated when it came gzip-encoded.
pub fn decode(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    let mut gzip = false;
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| DecodeError::Unsupported(String::from_utf8_lossy(value.as_bytes()).into_owned()))?;
        for coding in text.split(',').map(str::trim).filter(|coding| !coding.is_empty()) {
            match coding.to_ascii_lowercase().as_str() {
                "identity" => {}
                // Two layers of gzip are not something an SDK sends.
                "gzip" | "x-gzip" if !gzip => gzip = true,
                _ => return Err(DecodeError::Unsupported(coding.to_owned())),
            }
        }
    }
    if !gzip {
        return Ok(body);
    }
    let bound = limit.min(body.len().saturating_mul(MAX_RATIO));
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(body.as_ref())
        .take(u64::try_from(bound).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(|error| DecodeError::Corrupt(error.to_string()))?;
    if inflated.len() > bound {
        return Err(if bound == limit {
            DecodeError::TooLarge { limit }
        } else {
            DecodeError::Bomb { compressed: body.len() }
        });
    }
    Ok(Bytes::from(inflated))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("compress");
        Bytes::from(encoder.finish().expect("compress"))
    }

    fn headers(encoding: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_str(encoding).expect("header"),
        );
        headers
    }

    #[test]
    fn gzip_bodies_are_inflated_and_plain_ones_kept() {
        let json = br#"{"batch":[{"type":"track","event":"Signed Up"}]}"#;
        assert_eq!(
            decode(&headers("gzip"), gzip(json), 1 << 20).expect("inflates"),
            &json[..]
        );
        assert_eq!(
            decode(&headers("x-gzip"), gzip(json), 1 << 20).expect("inflates"),
            &json[..]
        );
        assert_eq!(
            decode(&headers("identity"), Bytes::from_static(json), 1 << 20).expect("as is"),
            &json[..]
        );
        assert_eq!(
            decode(&HeaderMap::new(), Bytes::from_static(json), 1 << 20).expect("as is"),
            &json[..]
        );
    }

    #[test]
    fn other_codings_corrupt_data_and_bombs_are_refused() {
        assert_eq!(
            decode(&headers("br"), Bytes::from_static(b"x"), 1 << 20),
            Err(DecodeError::Unsupported("br".to_owned()))
        );
        assert_eq!(
            decode(&headers("gzip, gzip"), gzip(b"{}"), 1 << 20),
            Err(DecodeError::Unsupported("gzip".to_owned()))
        );
        assert!(matches!(
            decode(&headers("gzip"), Bytes::from_static(b"not gzip at all"), 1 << 20),
            Err(DecodeError::Corrupt(_))
        ));
        // A megabyte of spaces compresses about a thousand times.
        let bomb = gzip(&vec![b' '; 1 << 20]);
        assert_eq!(
            decode(&headers("gzip"), bomb.clone(), 16 << 20),
            Err(DecodeError::Bomb { compressed: bomb.len() })
        );
        // Within the ratio but past the limit.
        let text: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_string().into_bytes()).collect();
        assert_eq!(
            decode(&headers("gzip"), gzip(&text), 100_000),
            Err(DecodeError::TooLarge { limit: 100_000 })
        );
    }
}
