//! The one HTTP client of upmirror (reqwest on rustls), built from the server's options: TLS verified against the
//! system roots or a given CA bundle, connect and read timeouts, an HTTP proxy whose Basic credentials are sent only
//! when "allow basic authentication" is on, the upstream's bearer token, and connection reuse with a per-host cap.
//! Metadata requests and content downloads both go through it, on the one process-wide tokio runtime.

mod connection;
mod errors;
mod lean;
mod options;
mod response;
mod retry;

pub(crate) use errors::{origin_of, parse_url, redacted};
pub use options::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECTIONS, DEFAULT_READ_TIMEOUT, HttpOptions, ProxyOptions};
pub use response::HttpResponse;
pub(crate) use response::StreamingResponse;
pub(crate) use retry::retry_after;
pub use retry::{DEFAULT_RETRIES, RETRYABLE_STATUSES, RetryPolicy};

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;

use crate::error::{Error, HttpErrorKind, Result};
use crate::progress::Progress;
pub(crate) use crate::runtime::runtime;
use errors::{chain, challenges};
use lean::{DirectSettings, LeanAnswer, Origin};
use response::ResponseBody;

/// How many redirects a request follows, as reqwest's default policy (which the proxied path keeps).
const MAX_REDIRECTS: usize = 10;

pub struct HttpClient {
    client: reqwest::Client,
    /// The same settings without connection reuse: a retry after a corrupted transfer must not reuse a connection.
    fresh_client: reqwest::Client,
    /// Where the proxy is (scheme, host and port only), for error messages.
    proxy_address: Option<String>,
    proxy_basic_allowed: bool,
    proxy_has_credentials: bool,
    max_connections_per_host: usize,
    /// By origin (scheme, host and port).
    origins: Mutex<HashMap<String, Arc<Origin>>>,
    /// GETs take lean connections (`connection`) unless a proxy is set.
    direct: Option<DirectSettings>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("proxy", &self.proxy_address)
            .field("max_connections_per_host", &self.max_connections_per_host)
            .finish_non_exhaustive()
    }
}

/// Installs the ring crypto provider for rustls once per process (reqwest is built without a provider of its own).
fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Another library of the process may have installed one first; either provider verifies the same way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl HttpClient {
    pub fn new(options: &HttpOptions) -> Result<Self> {
        install_crypto_provider();
        if options.max_connections_per_host == 0 {
            return Err(Error::InvalidInput("max_connections_per_host must be at least 1".into()));
        }
        let mut proxy_address = None;
        let mut proxy = None;
        if let Some(p) = &options.proxy {
            let url = url::Url::parse(&p.url)
                .map_err(|e| Error::InvalidInput(format!("the proxy URL is not a valid URL: {e}")))?;
            if !url.username().is_empty() || url.password().is_some() {
                // Refused without echoing the URL: it holds a secret.
                return Err(Error::InvalidInput(
                    "the proxy URL must not contain credentials; give them as the proxy user and password".into(),
                ));
            }
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Error::InvalidInput(format!(
                    "the proxy URL scheme {:?} is not supported; use http:// or https://",
                    url.scheme()
                )));
            }
            proxy_address = Some(format!(
                "{}://{}:{}",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.port_or_known_default().unwrap_or_default()
            ));
            proxy = Some((p.clone(), url));
        }
        let authorization = match &options.bearer_token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::InvalidInput("the bearer token contains characters not allowed in HTTP".into())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let tls = crate::tls::client_config(options.ca_file.as_deref(), options.verify_tls)?;
        let build = |reuse: bool| -> Result<reqwest::Client> {
            let mut headers = HeaderMap::new();
            if let Some(value) = &authorization {
                headers.insert(AUTHORIZATION, value.clone());
            }
            let mut builder = reqwest::Client::builder()
                .user_agent(options.user_agent.clone())
                .default_headers(headers)
                .connect_timeout(options.connect_timeout)
                .read_timeout(options.read_timeout)
                .tcp_nodelay(true)
                .http1_only()
                .pool_max_idle_per_host(if reuse { options.max_connections_per_host } else { 0 })
                .no_proxy();
            builder = builder.tls_backend_preconfigured(tls.clone());
            if let Some((p, url)) = &proxy {
                let mut reqwest_proxy = reqwest::Proxy::all(url.as_str())
                    .map_err(|e| Error::InvalidInput(format!("the proxy URL is not usable: {}", e.without_url())))?;
                if p.allow_basic_auth
                    && let (Some(user), Some(password)) = (&p.user, &p.password)
                {
                    let user = match &p.domain {
                        Some(domain) if !domain.is_empty() => format!("{domain}\\{user}"),
                        _ => user.clone(),
                    };
                    reqwest_proxy = reqwest_proxy.basic_auth(&user, password);
                }
                builder = builder.proxy(reqwest_proxy);
            }
            builder.build().map_err(|e| Error::InvalidInput(format!("cannot build the HTTP client: {}", chain(&e))))
        };
        let direct = if proxy.is_some() {
            None
        } else {
            Some(DirectSettings::new(options, authorization.clone(), tls.clone())?)
        };
        Ok(HttpClient {
            client: build(true)?,
            fresh_client: build(false)?,
            direct,
            proxy_address,
            proxy_basic_allowed: options.proxy.as_ref().is_some_and(|p| p.allow_basic_auth),
            proxy_has_credentials: options.proxy.as_ref().is_some_and(|p| p.user.is_some() && p.password.is_some()),
            max_connections_per_host: options.max_connections_per_host,
            origins: Mutex::new(HashMap::new()),
        })
    }

    fn origin(&self, url: &url::Url) -> Arc<Origin> {
        // The scheme, host and port name the origin (the url crate leaves a default port out, so both spellings of
        // one origin serialize alike). A URL with a user name keeps it out of the key.
        let with_user;
        let key = if url.username().is_empty() && url.password().is_none() {
            &url[..url::Position::AfterPort]
        } else {
            with_user = origin_of(url);
            &with_user
        };
        let mut origins = self.origins.lock().expect("the origin map is never poisoned");
        if let Some(origin) = origins.get(key) {
            return origin.clone();
        }
        let origin = Arc::new(Origin {
            slots: Arc::new(Semaphore::new(self.max_connections_per_host)),
            idle: Mutex::new(Vec::new()),
            max_idle: self.max_connections_per_host,
        });
        origins.insert(key.to_owned(), origin.clone());
        origin
    }

    /// Sends a request and returns once the headers arrived; the body is read by the caller. Waits for a free
    /// connection slot of the URL's host first. A proxy's refusal (407, or tinyproxy's 401 to wrong credentials)
    /// becomes an error of kind `ProxyRefused`.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        fresh_connection: bool,
    ) -> Result<StreamingResponse> {
        let mut parsed = parse_url(url)?;
        let first_origin = origin_of(&parsed);
        let mut redirects = 0;
        let slot = loop {
            let origin = self.origin(&parsed);
            let slot = origin.slots.clone().acquire_owned().await.expect("host slots are never closed");
            let Some(direct) = &self.direct else { break slot };
            if method != Method::GET || body.is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
                break slot;
            }
            // As reqwest does: the bearer token is for the origin asked, not for one a redirect names.
            let authorize = origin_of(&parsed) == first_origin;
            match direct.send(&parsed, &origin, &headers, fresh_connection, authorize).await? {
                LeanAnswer::Body(body) => return Ok(StreamingResponse { body, url: parsed, _slot: slot }),
                LeanAnswer::Redirect(next) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(Error::http(
                            HttpErrorKind::Redirect,
                            redacted(&parsed),
                            format!("more than {MAX_REDIRECTS} redirects"),
                        ));
                    }
                    if !matches!(next.scheme(), "http" | "https")
                        || !next.username().is_empty()
                        || next.password().is_some()
                    {
                        return Err(Error::http(
                            HttpErrorKind::Redirect,
                            redacted(&parsed),
                            "redirected to a URL that is not plain http:// or https://",
                        ));
                    }
                    // Other headers (a Range) go along unchanged, so a chunk is the same range of the moved file.
                    parsed = next;
                }
            }
        };
        let client = if fresh_connection { &self.fresh_client } else { &self.client };
        let mut request = client.request(method, parsed.clone()).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&parsed, &e))?;
        if self.proxy_address.is_some() {
            let status = response.status();
            if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
                return Err(self.proxy_refusal(status, &challenges(response.headers(), &PROXY_AUTHENTICATE)));
            }
            // Some proxies (tinyproxy) answer wrong credentials with 401 and a Basic challenge. upmirror never sends
            // Basic credentials to a server (its tokens are bearer tokens), so that challenge is the proxy's.
            let basic = |schemes: Vec<String>| schemes.iter().any(|s| s.eq_ignore_ascii_case("basic"));
            if status == StatusCode::UNAUTHORIZED
                && self.proxy_credentials_sent()
                && basic(challenges(response.headers(), &WWW_AUTHENTICATE))
            {
                return Err(self.proxy_refusal(status, &["Basic".to_owned()]));
            }
        }
        Ok(StreamingResponse { body: ResponseBody::Pooled(response), url: parsed, _slot: slot })
    }

    /// A whole request for metadata calls, the body read completely, tried again by `retry` (the download engine's
    /// policy): after a transient failure (`HttpErrorKind::is_transient`) and after an answer whose status it retries,
    /// waiting its backoff or the Retry-After asked. The last answer is returned whatever its status; TLS failures
    /// and a proxy's refusal are not retried. Blocks on the shared runtime (call it without holding the GIL); ends
    /// with `Cancelled` soon after `progress` is cancelled, waiting or not (Ctrl-C during a long Retry-After).
    pub fn request_blocking(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        retry: &RetryPolicy,
        progress: &Progress,
    ) -> Result<HttpResponse> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::InvalidInput(format!("{method:?} is not an HTTP method")))?;
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::InvalidInput(format!("{name:?} is not an HTTP header name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| Error::InvalidInput(format!("the value of header {name} is not allowed in HTTP")))?;
            header_map.append(name, value);
        }
        let attempts = async {
            let mut attempt = 0;
            loop {
                let answer =
                    self.whole_request(method.clone(), url, header_map.clone(), body.map(<[u8]>::to_vec)).await;
                let wait = match &answer {
                    Ok((response, _)) if !retry.retries_status(response.status) => return answer.map(|(r, _)| r),
                    Ok((_, retry_after)) => *retry_after,
                    Err(Error::Http { kind, .. }) if kind.is_transient() => None,
                    Err(_) => return answer.map(|(r, _)| r),
                };
                if attempt >= retry.retries {
                    return answer.map(|(r, _)| r);
                }
                attempt += 1;
                tokio::time::sleep(retry.backoff(attempt, wait)).await;
            }
        };
        runtime().block_on(async {
            tokio::select! {
                answer = attempts => answer,
                () = cancelled(progress) => Err(Error::Cancelled),
            }
        })
    }

    /// One request with its whole body, and the wait its Retry-After asks for.
    async fn whole_request(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<(HttpResponse, Option<std::time::Duration>)> {
        let mut response = self.send(method, url, headers, body, false).await?;
        let wait = retry_after(response.headers());
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        while let Some(data) = response.chunk(self).await? {
            body.extend_from_slice(&data);
        }
        Ok((HttpResponse { status, headers, body }, wait))
    }
}
/// Returns once `progress` is cancelled; it has no waker, so it is polled, at a pace a person pressing Ctrl-C does
/// not notice.
async fn cancelled(progress: &Progress) {
    while !progress.is_cancelled() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::errors::redact_str;
    use super::*;

    #[test]
    fn proxy_credentials_never_print() {
        let options = HttpOptions {
            proxy: Some(ProxyOptions {
                url: "http://127.0.0.1:3128".into(),
                user: Some("alice".into()),
                domain: Some("CORP".into()),
                password: Some("s3cret-pw".into()),
                allow_basic_auth: false,
            }),
            bearer_token: Some("tok-123".into()),
            ..HttpOptions::default()
        };
        let printed = format!("{options:?}");
        assert!(!printed.contains("s3cret-pw") && !printed.contains("tok-123"), "{printed}");
        let client = HttpClient::new(&options).unwrap();
        assert!(!format!("{client:?}").contains("s3cret-pw"));
    }

    #[test]
    fn proxy_urls_with_credentials_are_refused_without_echo() {
        let options = HttpOptions {
            proxy: Some(ProxyOptions { url: "http://bob:hunter2@127.0.0.1:3128".into(), ..ProxyOptions::default() }),
            ..HttpOptions::default()
        };
        let error = HttpClient::new(&options).unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_str("http://u:p@host/x"), "http://host/x");
        assert!(parse_url("ftp://host/x").is_err());
    }
}
