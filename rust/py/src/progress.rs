//! Running a long core call off the GIL while the calling thread polls its progress: the worker runs on a scoped
//! thread; every tick the caller takes the GIL, calls the Python progress callback, and checks for signals, so
//! Ctrl-C sets the cancellation flag and the worker stops at its next check, leaving its finished work in place.

use std::sync::mpsc;
use std::time::Duration;

use pyo3::prelude::*;
use upmirror_core::{Progress, ProgressSnapshot};

/// How often the callback runs and signals are checked.
const TICK: Duration = Duration::from_millis(100);

/// A copy of the progress counters, handed to Python progress callbacks.
#[pyclass(name = "ProgressSnapshot", module = "upmirror._native", frozen, get_all)]
#[derive(Clone)]
pub struct PyProgressSnapshot {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_failed: u64,
    pub files_total: u64,
    pub elapsed_seconds: f64,
    pub rate: f64,
}

#[pymethods]
impl PyProgressSnapshot {
    fn __repr__(&self) -> String {
        format!(
            "ProgressSnapshot(bytes_done={}, bytes_total={}, files_done={}, files_failed={}, files_total={}, \
             elapsed_seconds={:.3}, rate={:.0})",
            self.bytes_done,
            self.bytes_total,
            self.files_done,
            self.files_failed,
            self.files_total,
            self.elapsed_seconds,
            self.rate
        )
    }
}

impl From<ProgressSnapshot> for PyProgressSnapshot {
    fn from(s: ProgressSnapshot) -> Self {
        PyProgressSnapshot {
            bytes_done: s.bytes_done,
            bytes_total: s.bytes_total,
            files_done: s.files_done,
            files_failed: s.files_failed,
            files_total: s.files_total,
            elapsed_seconds: s.elapsed_seconds,
            rate: s.rate,
        }
    }
}

/// Runs `work` without the GIL on a worker thread, polling `progress` for the callback and for Ctrl-C.
///
/// When the callback raises or a signal handler raises (`KeyboardInterrupt`), the progress is cancelled, the worker is
/// awaited, and that Python exception is returned in place of the worker's result.
pub fn run_with_progress<T, F>(
    py: Python<'_>,
    progress: &Progress,
    callback: Option<&Bound<'_, PyAny>>,
    work: F,
) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let worker = scope.spawn(move || {
            let result = work();
            let _ = done_tx.send(());
            result
        });
        let mut interrupted: Option<PyErr> = None;
        let mut done_rx = Some(done_rx);
        loop {
            // A Receiver is Send but not Sync, so it moves into the GIL-free closure and back out.
            let rx = done_rx.take().expect("receiver is returned every tick");
            let (finished, rx) = py.detach(move || {
                let finished = match rx.recv_timeout(TICK) {
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
                    Err(mpsc::RecvTimeoutError::Timeout) => false,
                };
                (finished, rx)
            });
            done_rx = Some(rx);
            if interrupted.is_none() {
                let polled = py.check_signals().and_then(|()| match callback {
                    Some(cb) => cb.call1((PyProgressSnapshot::from(progress.snapshot()),)).map(drop),
                    None => Ok(()),
                });
                if let Err(err) = polled {
                    progress.cancel();
                    interrupted = Some(err);
                }
            }
            if finished {
                break;
            }
        }
        let result = py.detach(|| worker.join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match interrupted {
            Some(err) => Err(err),
            None => Ok(result),
        }
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyProgressSnapshot>()?;
    Ok(())
}
