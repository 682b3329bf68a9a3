//! Python access to the content store, so the server, the catalog generator and the sync never spell a content
//! path themselves, and no Python code writes a content directory: files are staged under `partial_path` and put
//! in place by `place_staged`, which verifies them, places them durably and records them in the content index.

use std::path::PathBuf;

use pyo3::prelude::*;
use upmirror_core::placement::{self, StagedFile, StagedReport};
use upmirror_core::{ContentIndex, ContentName, ContentStore, Progress};

use crate::errors::IntoPyResult;
use crate::hash::PyFileDigests;
use crate::progress::run_with_progress;

/// The path of a file relative to a content directory (`<XX>/<SHA-1><ext>`), from its SHA-1 hex and extension.
/// Raises ValueError for a digest that is not 40 hex digits or an extension that could name a path.
#[pyfunction]
fn content_relative_path(sha1: &str, extension: &str) -> PyResult<String> {
    ContentName::from_hex(sha1, extension).map(|name| name.relative_path()).into_py()
}

/// Parses a path relative to a content directory back into (SHA-1 lower-case hex, extension); ValueError for
/// anything that is not exactly a layout name.
#[pyfunction]
fn parse_content_path(relative: &str) -> PyResult<(String, String)> {
    let name = ContentName::parse_relative(relative).into_py()?;
    Ok((name.sha1_hex().to_ascii_lowercase(), name.extension))
}

/// Drops files deleted on purpose (cleanup) from a content directory's index, so that `verify_content` does not
/// report them missing. Paths are relative to the content directory.
#[pyfunction]
fn forget_deleted_content(py: Python<'_>, directory: PathBuf, relative_paths: Vec<String>) -> PyResult<()> {
    py.detach(|| ContentIndex::forget_deleted(&ContentStore::new(&directory), &relative_paths)).into_py()
}

/// Where to stage a file before `place_staged`: `<content_dir>/.partial/<purpose>.part` (the folder is created).
/// `purpose` names the writer and the file (`publish-<sha1>.cab`): letters, digits, `-`, `_`, `.`; ValueError else.
#[pyfunction]
fn partial_path(content_dir: PathBuf, purpose: &str) -> PyResult<PathBuf> {
    ContentStore::new(content_dir).staging_path(purpose).into_py()
}

/// What `place_staged` did; paths are relative to the content directory.
#[pyclass(name = "StagedReport", module = "upmirror._native", frozen, get_all)]
pub struct PyStagedReport {
    /// Per staged file, in order: size, sha1, sha256 and blake3 (`None`: it could not be read).
    digests: Vec<Option<PyFileDigests>>,
    placed: Vec<String>,
    present: Vec<String>,
    /// (position in the call, reason) of every refused file; when there is one, nothing was placed.
    refused: Vec<(usize, String)>,
}

impl From<StagedReport> for PyStagedReport {
    fn from(report: StagedReport) -> Self {
        PyStagedReport {
            digests: report.digests.into_iter().map(|d| d.map(PyFileDigests::from)).collect(),
            placed: report.placed,
            present: report.present,
            refused: report.refused,
        }
    }
}

/// One staged file: (staged path, sha1 hex, extension, size, sha256 hex or None, blake3 hex or None).
type StagedTuple = (PathBuf, String, String, u64, Option<String>, Option<String>);

fn digest_from_hex(hex_digest: Option<String>, algorithm: &str) -> PyResult<Option<[u8; 32]>> {
    hex_digest
        .map(|h| {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&h, &mut digest).map(|()| digest).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!("{h:?} is not a {algorithm} in hex (64 hex digits)"))
            })
        })
        .transpose()
}

/// Verifies files staged under `partial_path` against their names and digests (one read each, in parallel), and
/// when every one matches, places them atomically and durably in the layout and records them in the content index.
/// One refused file (listed in `refused`) and nothing is placed; the staged files are then removed.
#[pyfunction]
#[pyo3(signature = (content_dir, files, progress=None))]
fn place_staged(
    py: Python<'_>,
    content_dir: PathBuf,
    files: Vec<StagedTuple>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyStagedReport> {
    let staged = files
        .into_iter()
        .map(|(staged, sha1, extension, size, sha256, blake3)| {
            Ok(StagedFile {
                staged,
                name: ContentName::from_hex(&sha1, &extension).into_py()?,
                size,
                sha256: digest_from_hex(sha256, "SHA-256")?,
                blake3: digest_from_hex(blake3, "blake3")?,
            })
        })
        .collect::<PyResult<Vec<StagedFile>>>()?;
    let store = ContentStore::new(content_dir);
    let counters = Progress::new();
    let report = run_with_progress(py, &counters, progress, || placement::place_staged(&store, staged, &counters))?;
    report.map(PyStagedReport::from).into_py()
}

/// A content directory as the store lists it: `files` are (path as found on disk, sha1 lower-case hex, extension)
/// of every file in the layout; `outside` is everything else (folders with a trailing `/`), never content.
#[pyclass(name = "ContentScan", module = "upmirror._native", frozen, get_all)]
pub struct PyContentScan {
    files: Vec<(String, String, String)>,
    outside: Vec<String>,
}

/// Lists a content directory (its folders in parallel, no read of any file).
#[pyfunction]
fn scan_content(py: Python<'_>, content_dir: PathBuf) -> PyResult<PyContentScan> {
    let scan = py.detach(|| ContentStore::new(content_dir).scan()).into_py()?;
    let files = scan
        .files
        .into_iter()
        .map(|file| (file.relative, file.name.sha1_hex().to_ascii_lowercase(), file.name.extension))
        .collect();
    Ok(PyContentScan { files, outside: scan.outside })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStagedReport>()?;
    m.add_class::<PyContentScan>()?;
    m.add_function(wrap_pyfunction!(partial_path, m)?)?;
    m.add_function(wrap_pyfunction!(place_staged, m)?)?;
    m.add_function(wrap_pyfunction!(scan_content, m)?)?;
    m.add_function(wrap_pyfunction!(forget_deleted_content, m)?)?;
    m.add_function(wrap_pyfunction!(content_relative_path, m)?)?;
    m.add_function(wrap_pyfunction!(parse_content_path, m)?)?;
    Ok(())
}
