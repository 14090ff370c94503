//! pinpipe's producer: the Lambda that speaks the Kinesis-proxy REST contract (`pinpipe::api`,
//! docs/rest-api.md) and writes to this deployment's streams.
//!
//! It answers HTTP however AWS delivers it to a Lambda: an API Gateway REST API (the template's),
//! an HTTP API (payload 2.0), or a function URL — and `cargo lambda watch`, which serves the
//! function at `http://127.0.0.1:9000/lambda-url/producer/` with function-URL events. All of
//! them become the same `ApiRequest`, so routing, validation and answers cannot depend on the
//! way the request came.
//!
//! Environment: `PINPIPE_PREFIX` (required), `PINPIPE_STREAM_ADMIN` (`true|false`, default
//! false), `PINPIPE_PUT_RETRY_BUDGET_MS` (default 3000); logging as `pinpipe::logging` says.

use std::sync::Arc;

use lambda_http::{Body, Error, Request, Response, service_fn};
use pinpipe::api::{self, ApiConfig, ApiRequest};
use pinpipe::stream::kinesis::KinesisStreamStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pinpipe::allocator::keep_batch_memory();
    pinpipe::logging::init();

    let config = ApiConfig::from_env(&pinpipe::config::Env::process())?;
    let sdk_config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = KinesisStreamStore::from_sdk_config(&sdk_config);
    tracing::info!(
        prefix = %config.prefix,
        stream_admin = config.stream_admin,
        put_retry_budget_ms = config.put_retry.budget.as_millis() as u64,
        "producer starting"
    );

    let shared = Arc::new((config, store));
    lambda_http::run(service_fn(move |request: Request| {
        let shared = Arc::clone(&shared);
        async move {
            let (config, store) = &*shared;
            Ok::<_, Error>(to_lambda_response(api::handle(config, store, to_api_request(request)).await))
        }
    }))
    .await
}

/// The request as the contract sees it, whichever event carried it. lambda_http puts the stage in
/// front of a REST or HTTP API path (not `$default`'s, not a function URL's); the router skips
/// one such segment.
fn to_api_request(request: Request) -> ApiRequest {
    ApiRequest::from(request.map(|body| match body {
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        other => other.as_ref().to_vec(),
    }))
}

fn to_lambda_response(response: api::ApiResponse) -> Response<Body> {
    // The body is JSON text, so it goes back as text rather than base64-encoded binary.
    response.into_http().map(|bytes| Body::Text(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API Gateway REST proxy event, as Lambda receives it.
    fn rest_event(method: &str, path: &str, body: &str, base64: bool) -> Request {
        let event = serde_json::json!({
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": {"Content-Type": "application/json; charset=utf-8", "Host": "abc123.execute-api.us-east-1.amazonaws.com"},
            "multiValueHeaders": {"Content-Type": ["application/json; charset=utf-8"], "Host": ["abc123.execute-api.us-east-1.amazonaws.com"]},
            "queryStringParameters": null,
            "pathParameters": {"proxy": path.trim_start_matches('/')},
            "requestContext": {
                "accountId": "123456789012", "resourceId": "r1", "stage": "prod", "requestId": "req-1",
                "resourcePath": "/{proxy+}", "httpMethod": method, "apiId": "abc123",
                "identity": {"sourceIp": "192.0.2.1"}
            },
            "body": body,
            "isBase64Encoded": base64
        });
        lambda_http::request::from_str(&event.to_string()).expect("a REST proxy event")
    }

    /// An HTTP API (payload format 2.0) event; a function URL event has the same shape, with
    /// the `$default` stage and a `lambda-url` domain.
    fn http_api_event(method: &str, stage: &str, raw_path: &str, body: &str, base64: bool) -> Request {
        let domain = if stage == "$default" {
            "abcdefghij.lambda-url.us-east-1.on.aws"
        } else {
            "abc123.execute-api.us-east-1.amazonaws.com"
        };
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": raw_path,
            "rawQueryString": "",
            "headers": {"content-type": "application/json", "host": domain},
            "requestContext": {
                "accountId": "123456789012", "apiId": "abc123", "domainName": domain,
                "domainPrefix": "abc123", "requestId": "req-2", "routeKey": "$default", "stage": stage,
                "time": "03/Dec/2026:14:00:00 +0000", "timeEpoch": 1796306400000_i64,
                "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                         "sourceIp": "192.0.2.1", "userAgent": "curl/8"}
            },
            "body": body,
            "isBase64Encoded": base64
        });
        lambda_http::request::from_str(&event.to_string()).expect("an HTTP API event")
    }

    /// What each kind of event becomes: method, path as the router sees it, body.
    fn seen(request: Request) -> (String, String, Vec<u8>) {
        let request = to_api_request(request);
        (request.method.to_string(), request.path, request.body)
    }

    #[test]
    fn rest_http_api_and_function_url_events_become_the_same_request() {
        let body = r#"{"Data": {"ind": 1}, "PartitionKey": "p"}"#;
        let path = "/streams/streaming-abc-pin/record";
        let rest = seen(rest_event("PUT", path, body, false));
        let http_api = seen(http_api_event("PUT", "prod", &format!("/prod{path}"), body, false));
        let function_url = seen(http_api_event("PUT", "$default", path, body, false));
        assert_eq!(rest, ("PUT".to_string(), format!("/prod{path}"), body.as_bytes().to_vec()));
        assert_eq!(http_api, rest);
        assert_eq!(function_url, ("PUT".to_string(), path.to_string(), body.as_bytes().to_vec()));

        // "{\"Data\": {}}" base64-encoded, as a function URL sends a body it takes for binary.
        let (_, _, encoded) = seen(http_api_event("PUT", "$default", path, "eyJEYXRhIjoge319", true));
        assert_eq!(encoded, br#"{"Data": {}}"#);
    }

    #[tokio::test]
    async fn every_kind_of_event_is_routed_alike() {
        let config = ApiConfig::new("abc", false, std::time::Duration::from_millis(10)).unwrap();
        let store = pinpipe::local::embedded::EmbeddedStreams::new(1, 0);
        for (kind, list, unknown) in [
            ("REST", rest_event("GET", "/streams/", "", false), rest_event("GET", "/streams/x/y/z", "", false)),
            (
                "HTTP API",
                http_api_event("GET", "prod", "/prod/streams/", "", false),
                http_api_event("GET", "prod", "/prod/streams/x/y/z", "", false),
            ),
            (
                "function URL",
                http_api_event("GET", "$default", "/streams", "", false),
                http_api_event("GET", "$default", "/streams/x/y/z", "", false),
            ),
        ] {
            let response = api::handle(&config, &store, to_api_request(list)).await;
            assert_eq!(response.status, 200, "{kind}: {}", response.body);
            let response = api::handle(&config, &store, to_api_request(unknown)).await;
            assert_eq!(response.status, 404, "{kind}: {}", response.body);
            assert_eq!(response.body["error"], "RouteNotFound", "{kind}");
        }
    }

    #[test]
    fn rest_events_become_api_requests_with_the_stage_in_the_path() {
        let body = r#"{"Data": {"ind": 1}, "PartitionKey": "p"}"#;
        let request = to_api_request(rest_event("PUT", "/streams/streaming-abc-pin/record", body, false));
        assert_eq!(request.method, lambda_http::http::Method::PUT);
        assert_eq!(request.path, "/prod/streams/streaming-abc-pin/record");
        assert_eq!(request.content_type.as_deref(), Some("application/json; charset=utf-8"));
        assert_eq!(request.body, body.as_bytes());

        // "{\"Data\": {}}" base64-encoded, as API Gateway sends binary media types.
        let encoded = to_api_request(rest_event("PUT", "/streams/s/record", "eyJEYXRhIjoge319", true));
        assert_eq!(encoded.body, br#"{"Data": {}}"#);
    }

    #[test]
    fn responses_go_back_as_json_text() {
        let response = api::ApiResponse {
            status: lambda_http::http::StatusCode::NOT_FOUND,
            headers: Default::default(),
            body: serde_json::json!({"error": "RouteNotFound", "message": "no route"}),
        };
        let response = to_lambda_response(response);
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "application/json");
        match response.body() {
            Body::Text(text) => assert_eq!(text, r#"{"error":"RouteNotFound","message":"no route"}"#),
            other => panic!("expected a text body, got {other:?}"),
        }
    }
}
