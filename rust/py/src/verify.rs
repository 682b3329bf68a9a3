//! Python access to content-directory verification: `verify_content` and its report (the corrupt and missing
//! content paths a repair fetches again).

use std::path::PathBuf;

use pyo3::prelude::*;
use upmirror_core::{Progress, VerifyOptions, VerifyReport, verify_content as core_verify_content};

use crate::errors::IntoPyResult;
use crate::progress::run_with_progress;

/// What a verification found; paths are relative to the content directory.
#[pyclass(name = "VerifyReport", module = "upmirror._native", frozen, get_all)]
pub struct PyVerifyReport {
    pub files: u64,
    pub bytes: u64,
    pub trusted: u64,
    pub hashed_ok: u64,
    pub bytes_read: u64,
    pub corrupt: Vec<String>,
    pub missing: Vec<String>,
    pub unreadable: Vec<(String, String)>,
    pub outside_layout: Vec<String>,
}

impl From<VerifyReport> for PyVerifyReport {
    fn from(r: VerifyReport) -> Self {
        PyVerifyReport {
            files: r.files,
            bytes: r.bytes,
            trusted: r.trusted,
            hashed_ok: r.hashed_ok,
            bytes_read: r.bytes_read,
            corrupt: r.corrupt,
            missing: r.missing,
            unreadable: r.unreadable,
            outside_layout: r.outside_layout,
        }
    }
}

/// Checks every file of a content directory against the SHA-1 in its name (files unchanged since their last check
/// by the index, unless `full`) and updates the index.
#[pyfunction]
#[pyo3(signature = (directory, *, full=false, threads=None, progress=None))]
fn verify_content(
    py: Python<'_>,
    directory: PathBuf,
    full: bool,
    threads: Option<usize>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyVerifyReport> {
    let options = VerifyOptions { full, threads };
    let counters = Progress::new();
    let report = run_with_progress(py, &counters, progress, || core_verify_content(&directory, options, &counters))?;
    report.map(PyVerifyReport::from).into_py()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVerifyReport>()?;
    m.add_function(wrap_pyfunction!(verify_content, m)?)?;
    Ok(())
}
