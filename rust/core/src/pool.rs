//! Bounded worker pools: long file work runs on a rayon pool of a chosen size rather than the global one, so a
//! caller (a CLI flag, a server option) decides how many files are read or written at once.

use crate::error::{Error, Result};

/// Runs `work` on a rayon pool of `threads` threads (`None`: the global pool, one thread per core).
pub(crate) fn run_in_pool<T: Send>(threads: Option<usize>, work: impl FnOnce() -> T + Send) -> Result<T> {
    match threads {
        None => Ok(work()),
        Some(0) => Err(Error::InvalidInput("threads must be at least 1".into())),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| Error::InvalidInput(format!("cannot start {n} worker threads: {e}")))?;
            Ok(pool.install(work))
        }
    }
}
