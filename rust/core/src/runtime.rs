//! The one process-wide tokio runtime: every network task (downloads, metadata calls, the front) runs on it.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// The runtime every network task of the process runs on: created once, on first use, never one per call.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("upmirror-net")
            .enable_all()
            .build()
            .expect("the tokio runtime starts")
    })
}
