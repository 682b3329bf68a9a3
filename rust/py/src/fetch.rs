//! Python access to the download engine's records: `DownloadJob` (content-store or plain-file jobs), the per-file
//! `FileOutcome`, and the `DownloadReport` that `HttpClient.download` returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use upmirror_core::fetch::{self, DownloadOptions};
use upmirror_core::{ContentName, DownloadJob, ExpectedDigests, FileOutcome, HttpClient, JobTarget, Progress};

use crate::errors::IntoPyResult;
use crate::progress::run_with_progress;

fn digest<const N: usize>(name: &str, value: Option<&str>) -> PyResult<Option<[u8; N]>> {
    value
        .map(|hex_text| {
            let mut bytes = [0u8; N];
            hex::decode_to_slice(hex_text, &mut bytes)
                .map_err(|_| PyValueError::new_err(format!("{name} must be {} hex digits, not {hex_text:?}", N * 2)))?;
            Ok(bytes)
        })
        .transpose()
}

/// One file to download: into the content store (`DownloadJob.content`) or as a plain file (`DownloadJob.file`).
#[pyclass(name = "DownloadJob", module = "upmirror._native", frozen)]
pub struct PyDownloadJob {
    pub inner: DownloadJob,
}

#[pymethods]
impl PyDownloadJob {
    /// A content-store job: placed at `<XX>/<SHA1><extension>` after its SHA-1 and the strongest other digest given
    /// (blake3 over sha256) matched. Skipped when a file of that name and size is already there.
    #[staticmethod]
    #[pyo3(signature = (url, sha1, extension, size, *, sha256=None, blake3=None))]
    fn content(
        url: String,
        sha1: &str,
        extension: &str,
        size: u64,
        sha256: Option<&str>,
        blake3: Option<&str>,
    ) -> PyResult<Self> {
        let name = ContentName::from_hex(sha1, extension).into_py()?;
        let expected =
            ExpectedDigests { sha1: None, sha256: digest("sha256", sha256)?, blake3: digest("blake3", blake3)? };
        Ok(PyDownloadJob { inner: DownloadJob::content(url, name, size, expected) })
    }

    /// A plain file job: named `file_name`, else the URL's last path segment (refused if it could name another
    /// path); verified by the digests given, if any.
    #[staticmethod]
    #[pyo3(signature = (url, *, file_name=None, size=None, sha256=None, blake3=None, sha1=None))]
    fn file(
        url: String,
        file_name: Option<&str>,
        size: Option<u64>,
        sha256: Option<&str>,
        blake3: Option<&str>,
        sha1: Option<&str>,
    ) -> PyResult<Self> {
        let target = match file_name {
            Some(name) => JobTarget::file(name),
            None => JobTarget::file_from_url(&url),
        }
        .into_py()?;
        let expected = ExpectedDigests {
            sha1: digest("sha1", sha1)?,
            sha256: digest("sha256", sha256)?,
            blake3: digest("blake3", blake3)?,
        };
        Ok(PyDownloadJob { inner: DownloadJob { url, target, size, expected } })
    }

    #[getter]
    fn url(&self) -> &str {
        &self.inner.url
    }

    #[getter]
    fn size(&self) -> Option<u64> {
        self.inner.size
    }

    /// The path relative to the download directory where the file will be placed.
    #[getter]
    fn relative_path(&self) -> String {
        match &self.inner.target {
            JobTarget::Content(name) => name.relative_path(),
            JobTarget::File(name) => name.clone(),
        }
    }

    fn __repr__(&self) -> String {
        format!("DownloadJob(url={:?}, path={:?}, size={:?})", self.inner.url, self.relative_path(), self.inner.size)
    }
}

/// What became of one job: `status` is "placed", "skipped" or "failed" (then `reason` says why, naming the file).
#[pyclass(name = "FileOutcome", module = "upmirror._native", frozen, get_all)]
#[derive(Clone)]
pub struct PyFileOutcome {
    pub url: String,
    pub status: &'static str,
    pub path: Option<PathBuf>,
    pub reason: Option<String>,
    pub bytes_fetched: u64,
    pub bytes_reused: u64,
}

#[pymethods]
impl PyFileOutcome {
    fn __repr__(&self) -> String {
        match &self.reason {
            Some(reason) => format!("FileOutcome(status={:?}, url={:?}, reason={reason:?})", self.status, self.url),
            None => format!(
                "FileOutcome(status={:?}, url={:?}, path='{}')",
                self.status,
                self.url,
                self.path.as_deref().unwrap_or_else(|| Path::new("")).display()
            ),
        }
    }
}

/// The result of a download: one outcome per job (in job order) and the byte counts.
#[pyclass(name = "DownloadReport", module = "upmirror._native", frozen, get_all)]
pub struct PyDownloadReport {
    pub outcomes: Vec<PyFileOutcome>,
    pub placed: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Body bytes received from the network.
    pub bytes_transferred: u64,
    /// Bytes of verified chunks kept from an interrupted earlier run.
    pub bytes_reused: u64,
    /// Why an origin was given up (it stayed unreachable past the outage budget), naming it or the proxy; its
    /// files failed with this reason. None when every origin answered.
    pub unreachable: Option<String>,
    pub elapsed_seconds: f64,
}

#[pymethods]
impl PyDownloadReport {
    /// The failed outcomes only.
    #[getter]
    fn failures(&self) -> Vec<PyFileOutcome> {
        self.outcomes.iter().filter(|o| o.status == "failed").cloned().collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "DownloadReport(placed={}, skipped={}, failed={}, bytes_transferred={}, bytes_reused={})",
            self.placed, self.skipped, self.failed, self.bytes_transferred, self.bytes_reused
        )
    }
}

/// Runs a download off the GIL with progress polling; Ctrl-C cancels it and leaves resumable state.
pub fn download_jobs(
    py: Python<'_>,
    client: Arc<HttpClient>,
    jobs: &[PyRef<'_, PyDownloadJob>],
    directory: &Path,
    options: DownloadOptions,
    callback: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyDownloadReport> {
    let urls: Vec<String> = jobs.iter().map(|j| j.inner.url.clone()).collect();
    let jobs: Vec<DownloadJob> = jobs.iter().map(|j| j.inner.clone()).collect();
    let counters = Arc::new(Progress::new());
    let worker_counters = counters.clone();
    let report = run_with_progress(py, &counters, callback, move || {
        fetch::download(client, directory, jobs, options, worker_counters)
    })?
    .into_py()?;
    let outcomes: Vec<PyFileOutcome> = report
        .outcomes
        .iter()
        .zip(urls)
        .map(|(outcome, url)| match outcome {
            FileOutcome::Placed { path, bytes_fetched, bytes_reused } => PyFileOutcome {
                url,
                status: "placed",
                path: Some(path.clone()),
                reason: None,
                bytes_fetched: *bytes_fetched,
                bytes_reused: *bytes_reused,
            },
            FileOutcome::Skipped { path } => PyFileOutcome {
                url,
                status: "skipped",
                path: Some(path.clone()),
                reason: None,
                bytes_fetched: 0,
                bytes_reused: 0,
            },
            FileOutcome::Failed { reason } => PyFileOutcome {
                url,
                status: "failed",
                path: None,
                reason: Some(reason.clone()),
                bytes_fetched: 0,
                bytes_reused: 0,
            },
        })
        .collect();
    let count = |status: &str| outcomes.iter().filter(|o| o.status == status).count();
    Ok(PyDownloadReport {
        placed: count("placed"),
        skipped: count("skipped"),
        failed: count("failed"),
        outcomes,
        bytes_transferred: report.bytes_transferred,
        bytes_reused: report.bytes_reused,
        unreachable: report.unreachable,
        elapsed_seconds: counters.snapshot().elapsed_seconds,
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDownloadJob>()?;
    m.add_class::<PyFileOutcome>()?;
    m.add_class::<PyDownloadReport>()?;
    Ok(())
}
