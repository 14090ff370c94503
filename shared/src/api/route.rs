//! Routing: which action a method and path ask for, and whether the stream they name is one of
//! this deployment's. The routes are those of the original API Gateway → Kinesis proxy, so
//! existing clients keep working; a producer only ever touches its own deployment's streams.

use http::{Method, StatusCode};

use super::error::ApiError;
use super::{ApiConfig, MAX_STREAM_NAME_CHARS};
use crate::Table;

/// What a request asks for, once its route and method are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action<'a> {
    ListStreams,
    DescribeStream(&'a str),
    CreateStream(&'a str),
    DeleteStream(&'a str),
    PutRecord(&'a str),
    PutRecords(&'a str),
}

/// Finds the action of `method` on `path`. The path may carry one stage segment before
/// `streams` (API Gateway REST paths look like `/prod/streams/...`).
pub(super) fn route<'a>(method: &Method, path: &'a str) -> Result<Action<'a>, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["streams", ..] => &segments[..],
        [_stage, "streams", ..] => &segments[1..],
        _ => &[][..],
    };
    let not_allowed = |allow: &'static str| ApiError {
        allow: Some(allow),
        ..ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not allowed on {path}; allowed: {allow}"),
        )
    };
    match (rest, method) {
        (["streams"], &Method::GET) => Ok(Action::ListStreams),
        (["streams"], _) => Err(not_allowed("GET")),
        (["streams", name], &Method::GET) => Ok(Action::DescribeStream(name)),
        (["streams", name], &Method::POST) => Ok(Action::CreateStream(name)),
        (["streams", name], &Method::DELETE) => Ok(Action::DeleteStream(name)),
        (["streams", _], _) => Err(not_allowed("GET, POST, DELETE")),
        (["streams", name, "record"], &Method::PUT) => Ok(Action::PutRecord(name)),
        (["streams", name, "records"], &Method::PUT) => Ok(Action::PutRecords(name)),
        (["streams", _, "record" | "records"], _) => Err(not_allowed("PUT")),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "RouteNotFound",
            format!("no route for {method} {}; routes start at /streams", shorten(path)),
        )),
    }
}

/// Whether `name` is a syntactically valid Kinesis stream name.
fn is_valid_stream_name(name: &str) -> bool {
    (1..=MAX_STREAM_NAME_CHARS).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Refuses a name Kinesis would refuse (400) and a valid name that is not one of this
/// deployment's streams (404), so the producer never touches another deployment's streams.
pub(super) fn check_stream(config: &ApiConfig, name: &str) -> Result<Table, ApiError> {
    if !is_valid_stream_name(name) {
        return Err(ApiError::bad_request(
            "InvalidStreamName",
            format!(
                "stream name {:?} is invalid: Kinesis stream names are 1 to {MAX_STREAM_NAME_CHARS} characters of A-Z, a-z, 0-9, _, . and -",
                shorten(name)
            ),
        ));
    }
    Table::from_stream_name(&config.prefix, name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "StreamNotFound",
            format!("stream {name} is not one of this deployment's streams ({})", config.stream_names().join(", ")),
        )
    })
}

/// At most 80 characters of client input, for messages.
pub(super) fn shorten(text: &str) -> String {
    const LIMIT: usize = 80;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use http::header::ALLOW;
    use serde_json::json;

    use super::super::ApiRequest;
    use super::super::test_store::FaultyStreams;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn routes_match_with_and_without_a_stage_prefix() {
        for base in ["", "/prod", "/v1"] {
            assert_eq!(route(&Method::GET, &format!("{base}/streams")), Ok(Action::ListStreams));
            assert_eq!(route(&Method::GET, &format!("{base}/streams/")), Ok(Action::ListStreams));
            assert_eq!(route(&Method::GET, &format!("{base}/streams/s")), Ok(Action::DescribeStream("s")));
            assert_eq!(route(&Method::POST, &format!("{base}/streams/s")), Ok(Action::CreateStream("s")));
            assert_eq!(route(&Method::DELETE, &format!("{base}/streams/s")), Ok(Action::DeleteStream("s")));
            assert_eq!(route(&Method::PUT, &format!("{base}/streams/s/record")), Ok(Action::PutRecord("s")));
            assert_eq!(route(&Method::PUT, &format!("{base}/streams/s/records")), Ok(Action::PutRecords("s")));
        }
    }

    #[tokio::test]
    async fn unknown_routes_are_404() {
        let store = ours();
        for path in
            ["/", "", "/stream", "/prod/v1/streams", "/streams/s/recordz", "/streams/s/record/x", "/prod/topics/x"]
        {
            let response = call(&store, get(path)).await;
            assert_error(&response, 404, "RouteNotFound", "/streams");
        }
        assert!(store.nothing_changed());
    }

    #[tokio::test]
    async fn wrong_methods_on_known_routes_are_405_with_allow() {
        let store = ours();
        let cases = [
            (Method::POST, "/streams".to_string(), "GET"),
            (Method::PUT, format!("/streams/{PIN}"), "GET, POST, DELETE"),
            (Method::PATCH, format!("/prod/streams/{PIN}"), "GET, POST, DELETE"),
            (Method::POST, format!("/streams/{PIN}/record"), "PUT"),
            (Method::GET, format!("/streams/{PIN}/records"), "PUT"),
        ];
        for (method, path, allow) in cases {
            let response = call_admin(&store, ApiRequest::new(method.clone(), &path).with_json(&batch(1))).await;
            assert_error(&response, 405, "MethodNotAllowed", method.as_str());
            assert_eq!(response.headers.get(ALLOW).unwrap(), allow, "{method} {path}");
        }
        assert!(store.nothing_changed());
    }

    #[tokio::test]
    async fn invalid_stream_names_are_400_and_foreign_ones_404_on_every_route() {
        let store = FaultyStreams::with_streams(&[PIN, "streaming-other-pin"]);
        let invalid = ["bad name", "a%2Fb", "ünï", &"x".repeat(129)];
        let foreign =
            ["streaming-other-pin", "streaming-0a1b2c3d4e5f-orders", "streaming-0a1b2c3d4e5f-pin-x", "orders"];
        let requests = |name: &str| {
            vec![
                get(&format!("/streams/{name}")),
                ApiRequest::new(Method::POST, format!("/streams/{name}")),
                ApiRequest::new(Method::DELETE, format!("/streams/{name}")),
                put_json(&format!("/streams/{name}/record"), &json!({"Data": pin_record(1), "PartitionKey": "p"})),
                put_json(&format!("/streams/{name}/records"), &batch(2)),
            ]
        };
        for name in invalid {
            for request in requests(name) {
                let response = call_admin(&store, request).await;
                assert_error(&response, 400, "InvalidStreamName", "1 to 128 characters");
            }
        }
        for name in foreign {
            for request in requests(name) {
                let response = call_admin(&store, request).await;
                assert_error(&response, 404, "StreamNotFound", PIN);
            }
        }
        assert!(store.nothing_changed());
        assert_eq!(store.streams().len(), 2, "the other deployment's stream is untouched");
    }
}
