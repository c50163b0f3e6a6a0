//! The blocking HTTP client of the node API, and the one error type that carries a stable code
//! (from the node's `{"error":{"code","message"}}` bodies or from the CLI's own checks).

use depin_node::api_types::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// The most bytes of a response body the client reads. Blocks are the largest answers and stay
/// well under this.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An error with a stable machine code, printed as `<message> (<code>)`.
#[derive(Debug, Clone)]
pub struct CodedError {
    pub code: String,
    pub message: String,
}

impl CodedError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> CodedError {
        CodedError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CodedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for CodedError {}

/// A node's API at one base URL.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let config = ureq::Agent::config_builder()
            // 4xx and 5xx carry a JSON error body that we want to read, not a bare status.
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent: config.into(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The full URL of `path`. Only plain `http://` is spoken (the build has no TLS).
    fn url(&self, path: &str) -> Result<String, CodedError> {
        let rest = self.base.strip_prefix("http://").ok_or_else(|| {
            CodedError::new(
                "invalid_rpc_url",
                format!(
                    "node URL {:?} must start with http:// (e.g. http://127.0.0.1:7300)",
                    self.base
                ),
            )
        })?;
        if rest.is_empty() {
            return Err(CodedError::new(
                "invalid_rpc_url",
                format!("node URL {:?} names no host", self.base),
            ));
        }
        Ok(format!("{}{path}", self.base))
    }

    /// GET `path` (which starts with `/v1/...` and holds only validated, URL-safe parts).
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path)?;
        let result = self.agent.get(&url).call();
        self.finish(&url, result)
    }

    /// GET that turns a 404 with error code `missing_code` into `None`.
    pub fn get_optional<T: DeserializeOwned>(
        &self,
        path: &str,
        missing_code: &str,
    ) -> anyhow::Result<Option<T>> {
        match self.get(path) {
            Ok(value) => Ok(Some(value)),
            Err(e) => match e.downcast_ref::<CodedError>() {
                Some(coded) if coded.code == missing_code => Ok(None),
                _ => Err(e),
            },
        }
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = self.url(path)?;
        let result = self.agent.post(&url).send_json(body);
        self.finish(&url, result)
    }

    fn finish<T: DeserializeOwned>(
        &self,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let mut response = result.map_err(|e| self.transport_error(url, e))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| self.transport_error(url, e))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("unexpected answer from {url} (HTTP {status}): {e}"));
        }
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(&bytes) {
            return Err(CodedError::new(body.error.code, body.error.message).into());
        }
        let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
        Err(CodedError::new(
            format!("http_{status}"),
            format!("{url} answered HTTP {status}: {}", text.trim()),
        )
        .into())
    }

    fn transport_error(&self, url: &str, error: ureq::Error) -> anyhow::Error {
        match error {
            ureq::Error::BadUri(reason) => CodedError::new(
                "invalid_rpc_url",
                format!("invalid node URL {:?}: {reason}", self.base),
            )
            .into(),
            other => CodedError::new(
                "node_unreachable",
                format!(
                    "cannot reach the depin node at {} ({url}: {other}); start one with \
                     `depin node run` or `depin devnet`, or point --rpc / DEPIN_RPC at one",
                    self.base
                ),
            )
            .into(),
        }
    }
}
