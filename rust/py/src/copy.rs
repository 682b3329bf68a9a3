//! Python access to directory-to-directory replication of content directories: `copy_content` and its report.

use std::path::PathBuf;

use pyo3::prelude::*;
use upmirror_core::{CopyOptions, CopyReport, Progress, copy_content as core_copy_content};

use crate::errors::IntoPyResult;
use crate::progress::run_with_progress;

/// What a copy did; paths are relative to the content directories.
#[pyclass(name = "CopyReport", module = "upmirror._native", frozen, get_all)]
pub struct PyCopyReport {
    pub files: u64,
    pub bytes: u64,
    pub copied: u64,
    pub bytes_copied: u64,
    pub reflinked: u64,
    pub hardlinked: u64,
    pub hashed: u64,
    pub skipped: u64,
    pub rechecked: u64,
    pub replaced: u64,
    pub corrupt_source: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub outside_layout: Vec<String>,
}

impl From<CopyReport> for PyCopyReport {
    fn from(r: CopyReport) -> Self {
        PyCopyReport {
            files: r.files,
            bytes: r.bytes,
            copied: r.copied,
            bytes_copied: r.bytes_copied,
            reflinked: r.reflinked,
            hardlinked: r.hardlinked,
            hashed: r.hashed,
            skipped: r.skipped,
            rechecked: r.rechecked,
            replaced: r.replaced,
            corrupt_source: r.corrupt_source,
            failed: r.failed,
            outside_layout: r.outside_layout,
        }
    }
}

/// Replicates the content directory `source` into `destination`; ValueError for directories that cannot be copied
/// (not a directory, one inside the other).
// Keyword-only options from Python, each one argument: PyO3 offers no struct for them.
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (source, destination, *, hardlink=false, verify=false, threads=None, sync=true, progress=None))]
fn copy_content(
    py: Python<'_>,
    source: PathBuf,
    destination: PathBuf,
    hardlink: bool,
    verify: bool,
    threads: Option<usize>,
    sync: bool,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyCopyReport> {
    let options = CopyOptions { hardlink, verify, threads, sync };
    let counters = Progress::new();
    let report =
        run_with_progress(py, &counters, progress, || core_copy_content(&source, &destination, options, &counters))?;
    report.map(PyCopyReport::from).into_py()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCopyReport>()?;
    m.add_function(wrap_pyfunction!(copy_content, m)?)?;
    Ok(())
}
