//! Python access to staged duplicate finding and safe linking: `deduplicate` and its report.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use upmirror_core::{DedupOptions, DedupReport, DuplicateGroup, LinkKind, Progress, deduplicate as core_deduplicate};

use crate::errors::IntoPyResult;
use crate::progress::run_with_progress;

/// Files with identical bytes; `paths[0]` is the one kept.
#[pyclass(name = "DuplicateGroup", module = "upmirror._native", frozen, get_all)]
pub struct PyDuplicateGroup {
    pub size: u64,
    pub blake3: String,
    pub paths: Vec<String>,
}

impl From<DuplicateGroup> for PyDuplicateGroup {
    fn from(g: DuplicateGroup) -> Self {
        PyDuplicateGroup {
            size: g.size,
            blake3: hex::encode(g.blake3),
            paths: g.paths.into_iter().map(|p| p.to_string_lossy().into_owned()).collect(),
        }
    }
}

/// What a deduplication found and did.
#[pyclass(name = "DedupReport", module = "upmirror._native", frozen, get_all)]
pub struct PyDedupReport {
    pub files: u64,
    pub bytes: u64,
    pub candidates_by_size: u64,
    pub read_whole: u64,
    pub groups: Vec<Py<PyDuplicateGroup>>,
    pub bytes_duplicate: u64,
    pub files_linked: u64,
    pub bytes_saved: u64,
    pub changed: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl PyDedupReport {
    fn new(py: Python<'_>, r: DedupReport) -> PyResult<Self> {
        let lossy = |p: PathBuf| p.to_string_lossy().into_owned();
        Ok(PyDedupReport {
            files: r.files,
            bytes: r.bytes,
            candidates_by_size: r.candidates_by_size,
            read_whole: r.read_whole,
            groups: r.groups.into_iter().map(|g| Py::new(py, PyDuplicateGroup::from(g))).collect::<PyResult<_>>()?,
            bytes_duplicate: r.bytes_duplicate,
            files_linked: r.files_linked,
            bytes_saved: r.bytes_saved,
            changed: r.changed.into_iter().map(lossy).collect(),
            failed: r.failed.into_iter().map(|(p, reason)| (lossy(p), reason)).collect(),
        })
    }
}

/// Finds files with identical bytes under `roots` (size, then prefix and suffix, then full blake3) and, unless
/// `dry_run`, replaces duplicates by hard links (`link="hardlink"`) or shared extents (`link="reflink"`).
#[pyfunction]
#[pyo3(signature = (roots, *, link="hardlink", dry_run=false, min_size=1, threads=None, progress=None))]
fn deduplicate(
    py: Python<'_>,
    roots: Vec<PathBuf>,
    link: &str,
    dry_run: bool,
    min_size: u64,
    threads: Option<usize>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyDedupReport> {
    let link = match link {
        "hardlink" => LinkKind::Hardlink,
        "reflink" => LinkKind::Reflink,
        other => return Err(PyValueError::new_err(format!("link must be \"hardlink\" or \"reflink\", not {other:?}"))),
    };
    let options = DedupOptions { link, dry_run, min_size, threads };
    let counters = Progress::new();
    let report = run_with_progress(py, &counters, progress, || core_deduplicate(&roots, options, &counters))?;
    PyDedupReport::new(py, report.into_py()?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDuplicateGroup>()?;
    m.add_class::<PyDedupReport>()?;
    m.add_function(wrap_pyfunction!(deduplicate, m)?)?;
    Ok(())
}
