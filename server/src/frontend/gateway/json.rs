//! grpc-gateway's JSON conventions (v1, as etcd 3.4 and 3.5 serve them):
//! messages in the proto3 JSON mapping with the .proto field names, zero
//! values left out, 64-bit integers as strings, bytes as base64, enums by
//! name (numbers accepted on input), unknown fields refused; a call's error
//! as `{"error":M,"message":M,"code":N}` with the HTTP status grpc-gateway
//! maps the gRPC code to; a stream's items as `{"result":MSG}` lines and
//! its error as `{"error":{"grpc_code":..,"http_code":..,"message":..,
//! "http_status":..}}`.

use axum::body::Bytes;
use axum::http;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Code, Status};

/// grpc-gateway's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as H;
    match code {
        Code::Ok => H::OK,
        Code::Cancelled => H::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => H::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => H::BAD_REQUEST,
        Code::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        Code::NotFound => H::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => H::CONFLICT,
        Code::PermissionDenied => H::FORBIDDEN,
        Code::Unauthenticated => H::UNAUTHORIZED,
        Code::ResourceExhausted => H::TOO_MANY_REQUESTS,
        Code::Unimplemented => H::NOT_IMPLEMENTED,
        Code::Unavailable => H::SERVICE_UNAVAILABLE,
    }
}

/// The error body of a failed call. Field order as etcd 3.4's gateway
/// writes it (3.5's swaps message and code; JSON readers see no
/// difference, etcd's 3.4 end-to-end tests compare the text).
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

/// A failed call as grpc-gateway answers it.
pub fn error(status: &Status) -> Response {
    let body = ErrorBody {
        error: status.message(),
        message: status.message(),
        code: status.code() as i32,
    };
    let text = serde_json::to_string(&body).unwrap_or_default();
    (
        http_status(status.code()),
        [(http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

/// A call's answer.
pub fn message<T: Serialize>(msg: &T) -> Response {
    match serde_json::to_vec(msg) {
        Ok(body) => ([(http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(&Status::internal(e.to_string())),
    }
}

#[derive(Serialize)]
struct StreamError<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'a str,
}

#[derive(Serialize)]
enum Chunk<'a, T: Serialize> {
    #[serde(rename = "result")]
    Result(&'a T),
    #[serde(rename = "error")]
    Error(StreamError<'a>),
}

/// One line of a stream: `{"result":MSG}` and a newline.
pub fn stream_item<T: Serialize>(msg: &T) -> Bytes {
    line(&Chunk::Result(msg))
}

/// The line that ends a stream with `status`.
pub fn stream_error(status: &Status) -> Bytes {
    let http = http_status(status.code());
    line(&Chunk::<()>::Error(StreamError {
        grpc_code: status.code() as i32,
        http_code: http.as_u16(),
        message: status.message(),
        http_status: http.canonical_reason().unwrap_or(""),
    }))
}

fn line<T: Serialize>(v: &T) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// A whole request body as one message; an empty body (or only
/// whitespace) is the empty message, as grpc-gateway tolerates EOF.
pub fn parse_one<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = T::deserialize(&mut de).map_err(invalid)?;
    // Anything after the first value is not read, as Go's json.Decoder
    // leaves it.
    Ok(v)
}

/// Reads the JSON values a streaming request body carries, one after
/// another, as its chunks arrive.
pub struct ValueStream {
    buf: Vec<u8>,
    /// The most bytes one value may take.
    limit: usize,
}

impl ValueStream {
    pub fn new(limit: usize) -> ValueStream {
        ValueStream {
            buf: Vec::new(),
            limit,
        }
    }

    /// Appends a chunk and returns the values it completed; an error ends
    /// the stream (what came before it stands).
    pub fn push<T: DeserializeOwned>(&mut self, chunk: &[u8]) -> (Vec<T>, Option<Status>) {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<T>();
        let mut err = None;
        let mut used = 0;
        loop {
            match it.next() {
                Some(Ok(v)) => {
                    used = it.byte_offset();
                    out.push(v);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    err = Some(invalid(e));
                    break;
                }
                None => {
                    used = it.byte_offset();
                    break;
                }
            }
        }
        self.buf.drain(..used);
        if err.is_none() && self.buf.len() > self.limit {
            err = Some(Status::resource_exhausted(format!(
                "a request of more than {} bytes",
                self.limit
            )));
        }
        (out, err)
    }

    /// At the body's end: a value cut short is an error.
    pub fn finish(&self) -> Option<Status> {
        (!self.buf.iter().all(u8::is_ascii_whitespace))
            .then(|| Status::invalid_argument("unexpected EOF"))
    }
}

fn invalid(e: serde_json::Error) -> Status {
    Status::invalid_argument(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::etcdserverpb as pb;

    #[test]
    fn messages_use_proto_names_strings_for_64_bits_and_base64() {
        let r = pb::TxnResponse {
            header: Some(pb::ResponseHeader {
                revision: 2,
                ..Default::default()
            }),
            succeeded: true,
            responses: vec![pb::ResponseOp {
                response: Some(pb::response_op::Response::ResponsePut(pb::PutResponse {
                    header: Some(pb::ResponseHeader {
                        revision: 2,
                        ..Default::default()
                    }),
                    prev_kv: None,
                })),
            }],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"header":{"revision":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#
        );
    }

    #[test]
    fn requests_take_either_name_enum_numbers_and_refuse_unknown_fields() {
        let t: pb::TxnRequest = parse_one(
            br#"{"compare":[{"result":"EQUAL","target":"CREATE","key":"Zm9v","createRevision":"0"}],
                "success":[{"requestPut":{"key":"Zm9v","value":"YmFy"}}]}"#,
        )
        .unwrap();
        assert_eq!(t.compare[0].key, b"foo");
        assert_eq!(
            t.compare[0].target_union,
            Some(pb::compare::TargetUnion::CreateRevision(0))
        );
        let n: pb::Compare = parse_one(br#"{"result":1,"target":2,"create_revision":7}"#).unwrap();
        assert_eq!((n.result, n.target), (1, 2));
        let bad = parse_one::<pb::TxnRequest>(
            br#"{"compare":[{"result":0,"target":1,"key":"Zm9v","TargetUnion":null}]}"#,
        )
        .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert_eq!(
            parse_one::<pb::RangeRequest>(b" \n").unwrap(),
            pb::RangeRequest::default()
        );
    }

    #[test]
    fn a_stream_of_values_is_read_across_chunk_boundaries() {
        let mut s = ValueStream::new(1024);
        let (v, e) = s.push::<pb::LeaseKeepAliveRequest>(br#"{"ID":"1"} {"ID":"#);
        assert_eq!((v.len(), e.is_none()), (1, true));
        let (v, e) = s.push::<pb::LeaseKeepAliveRequest>(br#"2}"#);
        assert_eq!(v[0].id, 2);
        assert!(e.is_none() && s.finish().is_none());
        let (_, e) = s.push::<pb::LeaseKeepAliveRequest>(br#"{"ID":true}"#);
        assert_eq!(e.unwrap().code(), Code::InvalidArgument);
        let mut cut = ValueStream::new(1024);
        let _ = cut.push::<pb::LeaseKeepAliveRequest>(br#"{"ID":"#);
        assert!(cut.finish().is_some());
    }

    #[test]
    fn errors_read_as_grpc_gateway_writes_them() {
        let s = Status::unknown("\"leader\" field must be provided");
        let r = error(&s);
        assert_eq!(r.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        let line = stream_error(&Status::not_found("etcdserver: requested lease not found"));
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "{\"error\":{\"grpc_code\":5,\"http_code\":404,\"message\":\"etcdserver: requested lease not found\",\"http_status\":\"Not Found\"}}\n"
        );
    }
}
