//! The Python exception hierarchy, rooted in `upmirror.UpmirrorError`, and the mapping of core errors onto it.
//! I/O errors become the `OSError` subclass that matches their errno (CPython picks it), with the path attached.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use upmirror_core::{Error, HttpErrorKind};

create_exception!(upmirror, UpmirrorError, PyException, "The root of every error upmirror raises on purpose.");
create_exception!(
    upmirror,
    HttpError,
    UpmirrorError,
    "A request failed: reset, stalled, an answer that is not HTTP, a redirect that cannot be followed. `kind` names \
     which (unreachable, connect, timed_out, reset, body, redirect, tls, proxy_refused); the message names the URL."
);
create_exception!(
    upmirror,
    UnreachableError,
    HttpError,
    "No connection could be made; the message names the origin, or the proxy when requests go through one."
);
create_exception!(upmirror, TlsError, HttpError, "The TLS handshake failed (untrusted or mismatched certificate).");
create_exception!(
    upmirror,
    ProxyAuthenticationError,
    HttpError,
    "The proxy wants authentication upmirror may not or cannot give; the message says which, never a credential."
);

/// `InputError`: bad input (the core's `InvalidInput`, and the Python side's own checks), both an `UpmirrorError` and
/// a `ValueError` (msgspec turns a `ValueError` raised in `__post_init__` into a validation error). Two bases, which
/// `create_exception!` cannot give, so the class is made by calling `type` once.
fn input_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static INPUT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    INPUT_ERROR
        .get_or_try_init(py, || {
            let bases = PyTuple::new(py, [py.get_type::<UpmirrorError>(), py.get_type::<PyValueError>()])?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "upmirror")?;
            namespace.set_item(
                "__doc__",
                "A value given by the user is not allowed; the message names it and what is allowed. Nothing was \
                 changed.",
            )?;
            let class = py.get_type::<PyType>().call1(("InputError", bases, namespace))?;
            Ok(class.cast_into::<PyType>()?.unbind())
        })
        .map(|class| class.bind(py))
}

/// Converts a core error into the matching Python exception. (A free function: the orphan rule forbids `From`.)
pub fn to_py_err(error: Error) -> PyErr {
    match error {
        Error::Io { path, source } => {
            let path = path.to_string_lossy().into_owned();
            match source.raw_os_error() {
                // OSError(errno, strerror, filename) is turned by CPython into FileNotFoundError, PermissionError, ...
                Some(errno) => PyOSError::new_err((errno, strip_os_suffix(&source.to_string()), path)),
                None => PyOSError::new_err(format!("{path}: {source}")),
            }
        }
        Error::Cancelled => PyKeyboardInterrupt::new_err("cancelled"),
        Error::InvalidInput(message) => Python::attach(|py| match input_error(py) {
            Ok(class) => PyErr::from_type(class.clone(), message),
            Err(error) => error,
        }),
        Error::Http { kind, .. } => {
            let message = error.to_string();
            let raised = match kind {
                HttpErrorKind::Unreachable => UnreachableError::new_err(message),
                HttpErrorKind::Tls => TlsError::new_err(message),
                HttpErrorKind::ProxyRefused => ProxyAuthenticationError::new_err(message),
                _ => HttpError::new_err(message),
            };
            Python::attach(|py| match raised.value(py).setattr("kind", kind.name()) {
                Ok(()) => raised,
                Err(error) => error,
            })
        }
        // The engines sort mismatched bytes into their reports (a download restarts, a copy names the corrupt
        // source); one reaching Python is a fault of upmirror, reported as the root class.
        error @ Error::DigestMismatch { .. } => UpmirrorError::new_err(error.to_string()),
    }
}

/// `io::Error` prints "No such file or directory (os error 2)"; Python prints the errno itself.
fn strip_os_suffix(message: &str) -> String {
    message.find(" (os error").map_or(message, |end| &message[..end]).to_owned()
}

pub trait IntoPyResult<T> {
    fn into_py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for upmirror_core::Result<T> {
    fn into_py(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("UpmirrorError", m.py().get_type::<UpmirrorError>())?;
    m.add("InputError", input_error(m.py())?)?;
    m.add("HttpError", m.py().get_type::<HttpError>())?;
    m.add("UnreachableError", m.py().get_type::<UnreachableError>())?;
    m.add("TlsError", m.py().get_type::<TlsError>())?;
    m.add("ProxyAuthenticationError", m.py().get_type::<ProxyAuthenticationError>())?;
    // Every HttpError has a kind; the class's own is what a Python-side raise (without one) reads.
    m.py().get_type::<HttpError>().setattr("kind", "")?;
    Ok(())
}
