//! `upmirror._native`: the PyO3 bindings of `upmirror-core`. Each file registers its own Python items; none holds
//! logic of its own beyond converting arguments, releasing the GIL, mapping errors and polling progress.

// PyO3 hands Python arguments over as owned values; borrowing them is not an option the macros offer.
#![allow(clippy::needless_pass_by_value)]
// Python keyword arguments mirror the server's options one to one.
#![allow(clippy::too_many_arguments)]

use pyo3::prelude::*;

// mimalloc for every Rust allocation of the extension (Python keeps its own): the download engine allocates per
// request, and glibc's malloc is markedly slower at that on many small files (README, W3).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod copy;
mod dedup;
mod errors;
mod fetch;
mod front;
mod hash;
mod http;
mod progress;
mod store;
mod verify;
mod wsus;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    progress::register(m)?;
    hash::register(m)?;
    store::register(m)?;
    http::register(m)?;
    fetch::register(m)?;
    copy::register(m)?;
    verify::register(m)?;
    dedup::register(m)?;
    front::register(m)?;
    wsus::register(m)?;
    Ok(())
}
