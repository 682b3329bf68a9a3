//! Python access to the one HTTP client: `HttpClient` (built from the server's options) with `request` for metadata
//! calls and `download` for content, both running on the shared runtime with the GIL released and retried by the
//! core's one `RetryPolicy`. The defaults every layer takes (`DEFAULT_RETRIES`, the timeouts, the connections) are
//! the core's constants, exported here for options.py and the CLI.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use upmirror_core::fetch::DownloadOptions;
use upmirror_core::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECTIONS, DEFAULT_READ_TIMEOUT, DEFAULT_RETRIES, HttpClient, HttpOptions,
    Progress, ProxyOptions, RETRYABLE_STATUSES, RetryPolicy,
};

use crate::errors::IntoPyResult;
use crate::fetch::{PyDownloadJob, PyDownloadReport, download_jobs};
use crate::progress::run_with_progress;

/// A whole HTTP response: status, headers (in order, names lower-case) and body.
#[pyclass(name = "HttpResponse", module = "upmirror._native", frozen, get_all)]
pub struct PyHttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Py<PyBytes>,
}

#[pymethods]
impl PyHttpResponse {
    /// The first value of a header (case-insensitive name), or None.
    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("HttpResponse(status={}, body=<{} bytes>)", self.status, self.body.bind(py).as_bytes().len())
    }
}

/// The HTTP client built from the options; credentials are kept inside and never shown.
#[pyclass(name = "HttpClient", module = "upmirror._native", frozen)]
pub struct PyHttpClient {
    inner: Arc<HttpClient>,
}

#[pymethods]
impl PyHttpClient {
    #[new]
    #[pyo3(signature = (
        *, ca_file=None, verify_tls=true, proxy_url=None, proxy_user=None, proxy_domain=None, proxy_password=None,
        allow_basic_auth=false, bearer_token=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT.as_secs_f64(),
        read_timeout=DEFAULT_READ_TIMEOUT.as_secs_f64(), max_connections_per_host=DEFAULT_CONNECTIONS, user_agent=None
    ))]
    fn new(
        ca_file: Option<PathBuf>,
        verify_tls: bool,
        proxy_url: Option<String>,
        proxy_user: Option<String>,
        proxy_domain: Option<String>,
        proxy_password: Option<String>,
        allow_basic_auth: bool,
        bearer_token: Option<String>,
        connect_timeout: f64,
        read_timeout: f64,
        max_connections_per_host: usize,
        user_agent: Option<String>,
    ) -> PyResult<Self> {
        let seconds = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(pyo3::exceptions::PyValueError::new_err(format!("{name} must be a positive number of seconds")))
            }
        };
        let defaults = HttpOptions::default();
        let options = HttpOptions {
            ca_file,
            verify_tls,
            proxy: proxy_url.map(|url| ProxyOptions {
                url,
                user: proxy_user,
                domain: proxy_domain,
                password: proxy_password,
                allow_basic_auth,
            }),
            bearer_token,
            connect_timeout: seconds("connect_timeout", connect_timeout)?,
            read_timeout: seconds("read_timeout", read_timeout)?,
            max_connections_per_host,
            user_agent: user_agent.unwrap_or(defaults.user_agent),
        };
        Ok(PyHttpClient { inner: Arc::new(HttpClient::new(&options).into_py()?) })
    }

    /// One request with the whole body read (metadata calls); the GIL is released while it runs. Transient failures
    /// and the `retry_statuses` (429, 500, 502, 503, 504 unless given) are tried again up to `retries` times with the
    /// download engine's backoff (`backoff`: the first wait's bound in seconds) and Retry-After; the last answer is
    /// returned whatever its status. Failures raise HttpError (UnreachableError, TlsError, ProxyAuthenticationError).
    #[pyo3(signature = (method, url, body=None, headers=None, *, retries=0, retry_statuses=None, backoff=None))]
    fn request(
        &self,
        py: Python<'_>,
        method: String,
        url: String,
        body: Option<Vec<u8>>,
        headers: Option<HashMap<String, String>>,
        retries: u32,
        retry_statuses: Option<HashSet<u16>>,
        backoff: Option<f64>,
    ) -> PyResult<PyHttpResponse> {
        let headers: Vec<(String, String)> = headers.unwrap_or_default().into_iter().collect();
        let defaults = RetryPolicy::default();
        let policy = RetryPolicy {
            retries,
            backoff_base: non_negative_seconds("backoff", backoff, defaults.backoff_base)?,
            statuses: retry_statuses.map_or_else(|| defaults.statuses.clone(), |set| set.into_iter().collect()),
            ..defaults
        };
        let client = self.inner.clone();
        // Run like the engines, so that Ctrl-C ends a request waiting for its next attempt.
        let progress = Progress::new();
        let response = run_with_progress(py, &progress, None, || {
            client.request_blocking(&method, &url, &headers, body.as_deref(), &policy, &progress)
        })?
        .into_py()?;
        Ok(PyHttpResponse {
            status: response.status,
            headers: response.headers,
            body: PyBytes::new(py, &response.body).unbind(),
        })
    }

    /// Downloads the jobs under `directory` (a content directory for content jobs); see `DownloadReport`.
    #[pyo3(signature = (
        jobs, directory, *, connections=None, chunk_size=None, max_in_flight_bytes=None, retries=None, backoff=None,
        outage_budget=None, progress=None
    ))]
    fn download(
        &self,
        py: Python<'_>,
        jobs: Vec<PyRef<'_, PyDownloadJob>>,
        directory: PathBuf,
        connections: Option<usize>,
        chunk_size: Option<u64>,
        max_in_flight_bytes: Option<u64>,
        retries: Option<u32>,
        backoff: Option<f64>,
        outage_budget: Option<f64>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyDownloadReport> {
        let defaults = DownloadOptions::default();
        let retry = RetryPolicy {
            retries: retries.unwrap_or(defaults.retry.retries),
            backoff_base: non_negative_seconds("backoff", backoff, defaults.retry.backoff_base)?,
            ..defaults.retry.clone()
        };
        let outage_budget = non_negative_seconds("outage_budget", outage_budget, defaults.outage_budget)?;
        let chunk_size = chunk_size.unwrap_or(defaults.chunk_size);
        let connections = connections.unwrap_or(defaults.connections);
        let options = DownloadOptions {
            connections,
            chunk_size,
            // Enough budget for every connection to hold a chunk, unless the caller bounds it tighter.
            max_in_flight_bytes: max_in_flight_bytes
                .unwrap_or_else(|| defaults.max_in_flight_bytes.max(chunk_size * connections as u64)),
            retry,
            outage_budget,
        };
        download_jobs(py, self.inner.clone(), &jobs, &directory, options, progress)
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }
}

/// A number of seconds given from Python, or the default when none was.
fn non_negative_seconds(name: &str, value: Option<f64>, default: Duration) -> PyResult<Duration> {
    match value {
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(Duration::from_secs_f64(seconds)),
        Some(_) => {
            Err(pyo3::exceptions::PyValueError::new_err(format!("{name} must be a non-negative number of seconds")))
        }
        None => Ok(default),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHttpClient>()?;
    m.add_class::<PyHttpResponse>()?;
    // The one set of defaults: options.py, the CLI and the constructors above take them from here.
    m.add("DEFAULT_RETRIES", DEFAULT_RETRIES)?;
    m.add("DEFAULT_CONNECTIONS", DEFAULT_CONNECTIONS)?;
    m.add("DEFAULT_CONNECT_TIMEOUT_SECONDS", DEFAULT_CONNECT_TIMEOUT.as_secs_f64())?;
    m.add("DEFAULT_READ_TIMEOUT_SECONDS", DEFAULT_READ_TIMEOUT.as_secs_f64())?;
    m.add("RETRYABLE_STATUSES", pyo3::types::PyFrozenSet::new(m.py(), RETRYABLE_STATUSES)?)?;
    Ok(())
}
