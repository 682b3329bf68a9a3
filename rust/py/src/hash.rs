//! Python access to one-pass multi-digest hashing: `hash_file`, `hash_files` and the streaming `Hasher`.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use upmirror_core::{Algorithm, AlgorithmSet, Digests, MultiHasher, Progress, hash};

use crate::errors::{IntoPyResult, to_py_err};
use crate::progress::run_with_progress;

/// Below this many bytes an `update` keeps the GIL: releasing it costs more than hashing.
const RELEASE_GIL_MIN: usize = 64 << 10;

/// The digests of one file, as lower-case hex (`None` for an algorithm that was not asked for).
#[pyclass(name = "FileDigests", module = "upmirror._native", frozen, get_all, eq)]
#[derive(Clone, PartialEq)]
pub struct PyFileDigests {
    pub size: u64,
    pub blake3: Option<String>,
    pub sha256: Option<String>,
    pub sha1: Option<String>,
    pub xxh3: Option<String>,
}

#[pymethods]
impl PyFileDigests {
    /// The hex digest of one algorithm by name.
    fn get(&self, algorithm: &str) -> PyResult<Option<String>> {
        Ok(match parse_algorithm(algorithm)? {
            Algorithm::Blake3 => self.blake3.clone(),
            Algorithm::Sha256 => self.sha256.clone(),
            Algorithm::Sha1 => self.sha1.clone(),
            Algorithm::Xxh3 => self.xxh3.clone(),
        })
    }

    fn __repr__(&self) -> String {
        let fields: Vec<String> =
            [("blake3", &self.blake3), ("sha256", &self.sha256), ("sha1", &self.sha1), ("xxh3", &self.xxh3)]
                .into_iter()
                .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v:?}")))
                .collect();
        format!("FileDigests(size={}, {})", self.size, fields.join(", "))
    }
}

impl From<Digests> for PyFileDigests {
    fn from(d: Digests) -> Self {
        PyFileDigests {
            size: d.size,
            blake3: d.hex(Algorithm::Blake3),
            sha256: d.hex(Algorithm::Sha256),
            sha1: d.hex(Algorithm::Sha1),
            xxh3: d.hex(Algorithm::Xxh3),
        }
    }
}

fn parse_algorithm(name: &str) -> PyResult<Algorithm> {
    name.parse::<Algorithm>().map_err(to_py_err)
}

/// `None` means all four; otherwise a non-empty list of names.
fn parse_algorithms(names: Option<Vec<String>>) -> PyResult<AlgorithmSet> {
    let Some(names) = names else { return Ok(AlgorithmSet::ALL) };
    let set = names.iter().map(|n| parse_algorithm(n)).collect::<PyResult<AlgorithmSet>>()?;
    if set.is_empty() {
        return Err(PyValueError::new_err("no digest algorithm selected"));
    }
    Ok(set)
}

/// Hashes one file in a single pass.
#[pyfunction]
#[pyo3(signature = (path, algorithms=None, progress=None))]
fn hash_file(
    py: Python<'_>,
    path: PathBuf,
    algorithms: Option<Vec<String>>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyFileDigests> {
    let set = parse_algorithms(algorithms)?;
    let counters = Progress::new();
    let result = run_with_progress(py, &counters, progress, || hash::hash_file(&path, set, &counters))?;
    result.map(PyFileDigests::from).into_py()
}

/// Hashes many files in parallel; each entry of the result is a `FileDigests` or the `OSError` for that file.
#[pyfunction]
#[pyo3(signature = (paths, algorithms=None, threads=None, progress=None))]
fn hash_files(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    algorithms: Option<Vec<String>>,
    threads: Option<usize>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<Py<PyAny>>> {
    let set = parse_algorithms(algorithms)?;
    let counters = Progress::new();
    let results =
        run_with_progress(py, &counters, progress, || hash::hash_files(&paths, set, threads, &counters))?.into_py()?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(digests) => Ok(Py::new(py, PyFileDigests::from(digests))?.into_any()),
            Err(upmirror_core::Error::Cancelled) => Err(to_py_err(upmirror_core::Error::Cancelled)),
            Err(error) => Ok(to_py_err(error).into_value(py).into_any()),
        })
        .collect()
}

/// A streaming hasher for bytes fed from Python, computing several digests at once.
#[pyclass(name = "Hasher", module = "upmirror._native")]
pub struct PyHasher {
    inner: Option<MultiHasher>,
}

#[pymethods]
impl PyHasher {
    #[new]
    #[pyo3(signature = (algorithms=None))]
    fn new(algorithms: Option<Vec<String>>) -> PyResult<Self> {
        let set = parse_algorithms(algorithms)?;
        Ok(PyHasher { inner: Some(MultiHasher::new(set).into_py()?) })
    }

    /// Feeds bytes (bytes or bytearray); large pieces are hashed with the GIL released.
    fn update(&mut self, py: Python<'_>, data: PyBackedBytes) -> PyResult<()> {
        let hasher = self.inner.as_mut().ok_or_else(finished_error)?;
        if data.len() >= RELEASE_GIL_MIN {
            py.detach(|| hasher.update(&data));
        } else {
            hasher.update(&data);
        }
        Ok(())
    }

    /// Bytes fed so far.
    #[getter]
    fn size(&self) -> PyResult<u64> {
        Ok(self.inner.as_ref().ok_or_else(finished_error)?.size())
    }

    /// Ends the stream and returns its digests; the hasher cannot be fed afterwards.
    fn finalize(&mut self) -> PyResult<PyFileDigests> {
        Ok(self.inner.take().ok_or_else(finished_error)?.finalize().into())
    }
}

fn finished_error() -> PyErr {
    PyValueError::new_err("this Hasher was already finalized")
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFileDigests>()?;
    m.add_class::<PyHasher>()?;
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(hash_files, m)?)?;
    Ok(())
}
