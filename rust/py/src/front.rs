//! Python access to the HTTP front of `upmirror serve`: `ContentFront` serves `/Content` from Rust and forwards the
//! rest to the aiohttp backend on its Unix socket, until `stop()`.

use std::net::TcpListener;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use upmirror_core::{Front, FrontOptions};

use crate::errors::IntoPyResult;

/// The front, serving from the moment it is made. `listening_fd` is a bound, listening TCP socket, which the front
/// duplicates (the caller keeps its own); `max_request_body` is the backend's limit on request bodies. Raises
/// ValueError for a socket or TLS files it cannot use.
#[pyclass(name = "ContentFront", module = "upmirror._native", frozen)]
pub struct PyContentFront {
    front: Front,
}

#[pymethods]
impl PyContentFront {
    #[new]
    #[pyo3(signature = (listening_fd, content_dir, backend_socket, *, max_request_body, anonymous_content=false, tls_certificate=None, tls_key=None))]
    fn new(
        listening_fd: RawFd,
        content_dir: PathBuf,
        backend_socket: PathBuf,
        max_request_body: u64,
        anonymous_content: bool,
        tls_certificate: Option<PathBuf>,
        tls_key: Option<PathBuf>,
    ) -> PyResult<Self> {
        if listening_fd < 0 {
            return Err(PyValueError::new_err("the listening socket is closed"));
        }
        // SAFETY: the caller's socket object owns the descriptor and outlives this call; only a duplicate is kept.
        let descriptor = unsafe { BorrowedFd::borrow_raw(listening_fd) }
            .try_clone_to_owned()
            .map_err(|error| PyValueError::new_err(format!("cannot use the listening socket: {error}")))?;
        let tls = match (tls_certificate, tls_key) {
            (Some(certificate), Some(key)) => Some((certificate, key)),
            (None, None) => None,
            _ => return Err(PyValueError::new_err("TLS needs both a certificate and a key")),
        };
        let options = FrontOptions { content_dir, backend_socket, max_request_body, anonymous_content, tls };
        let front = Front::start(TcpListener::from(descriptor), options).into_py()?;
        Ok(PyContentFront { front })
    }

    /// Stops accepting connections and returns once the requests in flight finished (a few seconds at most).
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.front.stop());
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyContentFront>()?;
    Ok(())
}
