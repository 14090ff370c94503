//! What goes in and out of the contract: the request as the contract needs it (whatever carried
//! it), the JSON response, and the refusal ([`ApiError`]) that every check returns and that
//! becomes an error response with the one body shape clients rely on:
//! `{"error": "<Code>", "message": "<what is wrong>"}`. Stream service errors are mapped to
//! statuses here, once, so no handler decides them on its own.

use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use crate::stream::StreamError;

/// An HTTP request as the contract needs it: whatever carried it (API Gateway, a local server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: Method,
    /// The URL path, possibly with a stage prefix such as `/prod`; no query string.
    pub path: String,
    /// The `Content-Type` header, if the request had one.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self { method, path: path.into(), content_type: None, body: Vec::new() }
    }

    /// The request with a body and its content type.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type.to_string());
        self.body = body.into();
        self
    }

    /// The request with `value` as its `application/json` body.
    pub fn with_json(self, value: &Value) -> Self {
        self.with_body("application/json", value.to_string())
    }
}

impl From<http::Request<Vec<u8>>> for ApiRequest {
    fn from(request: http::Request<Vec<u8>>) -> Self {
        let (parts, body) = request.into_parts();
        // A header that is not visible ASCII cannot name a JSON type; keep it so it is refused.
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().map_or_else(|_| "<not ASCII>".to_string(), str::to_string));
        Self { method: parts.method, path: parts.uri.path().to_string(), content_type, body }
    }
}

/// The answer: a status, extra headers (`Allow` on 405) and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl ApiResponse {
    pub(super) fn ok(body: Value) -> Self {
        Self { status: StatusCode::OK, headers: HeaderMap::new(), body }
    }

    /// The `error` code of an error response.
    pub fn error_code(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    /// The body as compact JSON text.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body.to_string().into_bytes()
    }

    /// The response as a plain `http` response with `Content-Type: application/json`.
    pub fn into_http(self) -> http::Response<Vec<u8>> {
        let body = self.body_bytes();
        let mut response = http::Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// A refusal or failure on its way to becoming an error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// The methods the route allows, for the `Allow` header of a 405.
    pub(super) allow: Option<&'static str>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), allow: None }
    }

    pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<ApiError> for ApiResponse {
    fn from(err: ApiError) -> Self {
        let mut headers = HeaderMap::new();
        if let Some(allow) = err.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        Self { status: err.status, headers, body: json!({"error": err.code, "message": err.message}) }
    }
}

impl From<StreamError> for ApiError {
    fn from(err: StreamError) -> Self {
        match err {
            StreamError::NotFound(name) => {
                Self::new(StatusCode::NOT_FOUND, "StreamNotFound", format!("stream {name} does not exist"))
            }
            StreamError::InUse(name) => Self::new(
                StatusCode::CONFLICT,
                "StreamInUse",
                format!("stream {name} already exists or is being created or deleted"),
            ),
            StreamError::Throttled(_) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                "the stream service is throttling requests; retry later",
            ),
            StreamError::Invalid(message) => Self::bad_request("InvalidArgument", message),
            StreamError::Service(message) => {
                // The details may name accounts and endpoints: they go to the log, not the client.
                tracing::error!(error = %message, "stream service failed");
                Self::new(StatusCode::BAD_GATEWAY, "StreamServiceError", "the stream service failed; retry later")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::route::route;
    use super::super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn stream_service_errors_map_to_statuses() {
        let cases = [
            (StreamError::NotFound(PIN.to_string()), 404, "StreamNotFound"),
            (StreamError::InUse(PIN.to_string()), 409, "StreamInUse"),
            (StreamError::Throttled("rate exceeded".to_string()), 429, "Throttled"),
            (StreamError::Invalid("bad shard".to_string()), 400, "InvalidArgument"),
            (StreamError::Service("account 123456789012 endpoint down".to_string()), 502, "StreamServiceError"),
        ];
        for (err, status, code) in cases {
            let store = ours();
            store.fail_next_control_call(err);
            let response = call(&store, get(&format!("/streams/{PIN}"))).await;
            assert_error(&response, status, code, "");
            assert!(!response.body.to_string().contains("123456789012"), "service details stay in the log");
        }
    }

    #[test]
    fn responses_become_json_http_responses() {
        let request = http::Request::builder()
            .method(Method::PUT)
            .uri("https://api.example.com/prod/streams/s/record?x=1")
            .header(CONTENT_TYPE, "application/json")
            .body(b"{}".to_vec())
            .unwrap();
        let request = ApiRequest::from(request);
        assert_eq!(request.path, "/prod/streams/s/record");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));

        let response: ApiResponse = route(&Method::POST, "/streams").unwrap_err().into();
        let http = response.into_http();
        assert_eq!(http.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(http.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(http.headers()[ALLOW], "GET");
        let body: Value = serde_json::from_slice(http.body()).unwrap();
        assert_eq!(body["error"], "MethodNotAllowed");
    }
}
