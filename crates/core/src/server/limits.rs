//! What every service refuses before a handler runs, answered with the code
//! the contract promises rather than tonic's own.
//!
//! - A request message over [`MAX_MESSAGE_BYTES`] is RESOURCE_EXHAUSTED
//!   (tonic says OUT_OF_RANGE). The length prefix of each message is read
//!   as it arrives, so a too-large message is refused before its bytes are
//!   buffered, whatever the service's generated server is configured with.
//! - A message nested deeper than protobuf decodes ([`NESTING_LIMIT`]
//!   levels: a `google.protobuf.Struct` spends three per JSON object) is
//!   INVALID_ARGUMENT naming the field (tonic says INTERNAL, "failed to
//!   decode Protobuf message").
//!
//! Both failures happen while the request is decoded, before a handler
//! runs, so tonic answers them trailers-only: the status is in the headers,
//! and that is where it is rewritten.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;
use tonic::{Code, Status};

use crate::error::FieldViolation;

/// The largest request message any service decodes: 4 MiB, tonic's default,
/// made explicit. A larger one is RESOURCE_EXHAUSTED. A service that sets
/// `max_decoding_message_size` on its generated server passes this constant,
/// so the two limits agree.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How deep messages may nest: prost's recursion limit. The top-level
/// message is level 0; every nested message, map entry included, is one
/// level more, and one past this limit does not decode.
pub const NESTING_LIMIT: usize = 100;

/// RESOURCE_EXHAUSTED for a message over `limit` bytes.
pub fn message_too_large(limit: usize) -> Status {
    Status::resource_exhausted(format!("the message is larger than the limit of {limit} bytes"))
}

/// The violation of a field whose value nests deeper than [`NESTING_LIMIT`].
pub fn nested_too_deeply(field: impl Into<String>) -> FieldViolation {
    FieldViolation::new(
        field,
        format!("is nested too deeply: more than {NESTING_LIMIT} levels of protobuf messages"),
    )
}

/// Bounds each gRPC request message to [`MAX_MESSAGE_BYTES`] and answers
/// decoding failures with the contract's codes. Runs inside the grpc-web
/// translation, so it sees native gRPC framing.
pub(super) async fn guard_messages(request: Request, next: Next) -> Response {
    if !is_grpc(request.headers()) {
        return next.run(request).await;
    }
    let request = request.map(|body| Body::new(MessageLimit::new(body, MAX_MESSAGE_BYTES)));
    let mut response = next.run(request).await;
    let rewritten = Status::from_header_map(response.headers()).and_then(|status| contract_status(&status));
    if let Some(status) = rewritten {
        let headers = response.headers_mut();
        for name in [Status::GRPC_STATUS, Status::GRPC_MESSAGE, Status::GRPC_STATUS_DETAILS] {
            headers.remove(name);
        }
        if let Err(error) = status.add_header(headers) {
            tracing::warn!(error = %error, "cannot write the rewritten status");
        }
    }
    response
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/grpc"))
}

/// The status the contract promises for a decoding failure tonic answered
/// with its own code, or `None` when `status` is not one.
fn contract_status(status: &Status) -> Option<Status> {
    match status.code() {
        // A generated server configured below MAX_MESSAGE_BYTES refuses
        // first, with tonic's "decoded message length too large: found N
        // bytes, the limit is: L bytes".
        Code::OutOfRange if status.message().contains("decoded message length too large") => {
            let limit = status
                .message()
                .rsplit("the limit is: ")
                .next()
                .and_then(|rest| rest.trim_end_matches(" bytes").parse().ok())
                .unwrap_or(MAX_MESSAGE_BYTES);
            Some(message_too_large(limit))
        }
        Code::Internal => {
            let stack = status
                .message()
                .strip_prefix(DECODE_FAILURE_PREFIX)?
                .strip_suffix(RECURSION_LIMIT_REACHED)?;
            // Nesting no field holds (unknown fields' groups) is the request's.
            let field = field_of_decode_stack(stack).unwrap_or_else(|| "request".to_owned());
            Some(crate::error::invalid_argument(vec![nested_too_deeply(field)]))
        }
        _ => None,
    }
}

/// How prost's `DecodeError` starts, and how it ends when the recursion
/// limit is the cause. tonic answers it as INTERNAL with this text.
const DECODE_FAILURE_PREFIX: &str = "failed to decode Protobuf message: ";
const RECURSION_LIMIT_REACHED: &str = "recursion limit reached";

/// The field a too-deep decode failed in, from prost's stack of
/// `Message.field: ` pairs (innermost first): the proto names of the
/// fields from the top-level message down, stopping where a
/// `google.protobuf.Struct` takes over, as `events.properties`.
fn field_of_decode_stack(stack: &str) -> Option<String> {
    const STRUCT_TYPES: [&str; 3] = ["Struct", "Value", "ListValue"];
    let pairs: Vec<&str> = stack.split(": ").filter(|pair| !pair.is_empty()).collect();
    let fields: Vec<&str> = pairs
        .into_iter()
        .rev()
        .filter_map(|pair| pair.split_once('.'))
        .take_while(|(message, _)| !STRUCT_TYPES.contains(message))
        .map(|(_, field)| field.trim_start_matches("r#"))
        .collect();
    (!fields.is_empty()).then(|| fields.join("."))
}

/// Follows the gRPC framing of a request body (a compressed flag and a
/// 4-byte big-endian length before each message) across data frames, however
/// they are split.
#[derive(Debug, Clone)]
struct FrameScanner {
    limit: usize,
    header: [u8; 5],
    header_filled: usize,
    message_left: usize,
}

impl FrameScanner {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            header: [0; 5],
            header_filled: 0,
            message_left: 0,
        }
    }

    /// Reads the next bytes of the body; `Err` with the declared length of
    /// the first message over the limit.
    fn scan(&mut self, mut chunk: &[u8]) -> Result<(), usize> {
        while !chunk.is_empty() {
            if self.message_left > 0 {
                let skipped = self.message_left.min(chunk.len());
                self.message_left -= skipped;
                chunk = &chunk[skipped..];
                continue;
            }
            let taken = (self.header.len() - self.header_filled).min(chunk.len());
            self.header[self.header_filled..self.header_filled + taken].copy_from_slice(&chunk[..taken]);
            self.header_filled += taken;
            chunk = &chunk[taken..];
            if self.header_filled == self.header.len() {
                self.header_filled = 0;
                let [_, length @ ..] = self.header;
                let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
                if length > self.limit {
                    return Err(length);
                }
                self.message_left = length;
            }
        }
        Ok(())
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with RESOURCE_EXHAUSTED as soon as a
    /// message's length prefix declares more than the limit (tonic answers
    /// a body's failing `Status` as it is).
    struct MessageLimit<B> {
        #[pin]
        inner: B,
        scanner: FrameScanner,
        refused: bool,
    }
}

impl<B> MessageLimit<B> {
    fn new(inner: B, limit: usize) -> Self {
        Self {
            inner,
            scanner: FrameScanner::new(limit),
            refused: false,
        }
    }
}

impl<B> http_body::Body for MessageLimit<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.refused {
            return Poll::Ready(None);
        }
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref()
            && this.scanner.scan(data).is_err()
        {
            *this.refused = true;
            return Poll::Ready(Some(Err(Box::new(message_too_large(this.scanner.limit)))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.refused || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn framed(lengths: &[usize]) -> Vec<u8> {
        let mut body = Vec::new();
        for &length in lengths {
            body.push(0);
            body.extend_from_slice(&u32::try_from(length).expect("small").to_be_bytes());
            body.extend(std::iter::repeat_n(7u8, length));
        }
        body
    }

    proptest! {
        #[test]
        fn the_first_message_over_the_limit_is_found_however_the_body_is_split(
            lengths in proptest::collection::vec(0usize..40, 1..6),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            limit in 0usize..40,
        ) {
            let body = framed(&lengths);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|cut| cut.min(body.len())).collect();
            cuts.extend([0, body.len()]);
            cuts.sort_unstable();
            let mut scanner = FrameScanner::new(limit);
            let outcome = cuts
                .windows(2)
                .try_for_each(|window| scanner.scan(&body[window[0]..window[1]]));
            let expected = lengths.iter().copied().find(|&length| length > limit);
            prop_assert_eq!(outcome.err(), expected);
        }
    }

    #[test]
    fn a_decode_stack_names_the_field_holding_the_struct() {
        use prost::Message as _;
        use prost_types::value::Kind;
        let mut properties = prost_types::Struct::default();
        for _ in 0..40 {
            let mut outer = prost_types::Struct::default();
            outer.fields.insert(
                "a".to_owned(),
                prost_types::Value {
                    kind: Some(Kind::StructValue(properties)),
                },
            );
            properties = outer;
        }
        let request = metrix_proto::metrics::v1::TrackEventsRequest {
            events: vec![metrix_proto::metrics::v1::Event {
                properties: Some(properties),
                ..Default::default()
            }],
            ..Default::default()
        };
        let error = metrix_proto::metrics::v1::TrackEventsRequest::decode(request.encode_to_vec().as_slice())
            .expect_err("40 objects deep is past the recursion limit");
        // tonic answers a decode failure as INTERNAL with prost's text.
        let rewritten = contract_status(&Status::internal(error.to_string())).expect("a recursion failure");
        assert_eq!(rewritten.code(), Code::InvalidArgument);
        assert_eq!(
            crate::testing::violated_fields(&rewritten),
            ["events.properties"],
            "{}",
            rewritten.message()
        );
    }

    #[test]
    fn other_failures_keep_their_code() {
        assert!(contract_status(&Status::internal("internal error")).is_none());
        assert!(contract_status(&Status::internal("failed to decode Protobuf message: invalid varint")).is_none());
        assert!(contract_status(&Status::out_of_range("page 9 is past the end")).is_none());
        let too_large = contract_status(&Status::out_of_range(
            "Error, decoded message length too large: found 2048 bytes, the limit is: 1024 bytes",
        ))
        .expect("tonic's size failure");
        assert_eq!(too_large.code(), Code::ResourceExhausted);
        assert_eq!(
            too_large.message(),
            "the message is larger than the limit of 1024 bytes"
        );
    }
}
