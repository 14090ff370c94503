//! pinpipe's producer: the Lambda behind API Gateway that speaks the Kinesis-proxy REST contract
//! (`pinpipe::api`) and writes to this deployment's streams.
//!
//! Environment: `PINPIPE_PREFIX` (required), `PINPIPE_STREAM_ADMIN` (`true|false`, default
//! false), `PINPIPE_PUT_RETRY_BUDGET_MS` (default 3000); logging as `pinpipe::logging` says.

use std::sync::Arc;

use lambda_http::{Body, Error, Request, Response, service_fn};
use pinpipe::api::{self, ApiConfig, ApiRequest};
use pinpipe::stream::kinesis::KinesisStreamStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
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

/// The API Gateway request as the contract sees it. The path keeps any stage prefix; the
/// router skips it.
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
