//! Python access to the content layout, so the server, the catalog generator and the sync never spell a content
//! path themselves.

use std::path::PathBuf;

use pyo3::prelude::*;
use upmirror_core::{ContentIndex, ContentName, ContentStore};

use crate::errors::IntoPyResult;

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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(forget_deleted_content, m)?)?;
    m.add_function(wrap_pyfunction!(content_relative_path, m)?)?;
    m.add_function(wrap_pyfunction!(parse_content_path, m)?)?;
    Ok(())
}
