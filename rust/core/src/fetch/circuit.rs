//! The origin circuit: connections that cannot be made open a down state per origin; its files wait for it instead
//! of spending their retries, one probe at a time re-tests it, and after the outage budget every file still to come
//! from it ends at once as unreachable.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

use super::schedule::{Context, FileError};
use crate::error::Error;

/// Connections in a row that could not be made (over all files of an origin) before the origin counts as down.
const CIRCUIT_THRESHOLD: u32 = 3;

/// An origin as the downloads see it, shared by every file from it: up, or down once `CIRCUIT_THRESHOLD`
/// connections in a row could not be made. While it is down, files wait in `pass` instead of spending their own
/// retries, and one request at a time (the probe) tries again, after pauses that grow as backoffs do. A probe that
/// connects brings every waiting file back; a probe that fails after the outage budget is spent makes the origin
/// gone, and every file still to come from it ends at once, unreachable.
#[derive(Default)]
pub(super) struct Circuit {
    /// Set while connections fail: a clear flag (the usual case) costs a request one atomic load.
    pub(super) troubled: AtomicBool,
    pub(super) state: Mutex<CircuitState>,
    pub(super) changed: Notify,
}

#[derive(Default)]
pub(super) struct CircuitState {
    /// Connections in a row that could not be made.
    pub(super) failures: u32,
    pub(super) down: Option<Down>,
    pub(super) probing: bool,
    /// Why the origin is given up, once the outage budget is spent.
    pub(super) gone: Option<String>,
}

pub(super) struct Down {
    pub(super) since: Instant,
    pub(super) probes: u32,
    pub(super) next_probe: Instant,
}

impl Circuit {
    pub(super) fn gone(&self) -> Option<String> {
        if !self.troubled.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().expect("circuit lock").gone.clone()
    }

    /// Waits until a request may go to the origin: at once while it is up; while it is down, until this request is
    /// the next probe or another one connected.
    pub(super) async fn pass(self: &Arc<Self>, context: &Context) -> Result<Pass, FileError> {
        let pass = |probe| Pass { circuit: self.clone(), probe };
        loop {
            if !self.troubled.load(Ordering::Acquire) {
                return Ok(pass(false));
            }
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut state = self.state.lock().expect("circuit lock");
                if let Some(reason) = &state.gone {
                    return Err(FileError::Unreachable(reason.clone()));
                }
                let now = Instant::now();
                match &state.down {
                    None => return Ok(pass(false)),
                    Some(_) if state.probing => None,
                    Some(down) if now < down.next_probe => Some(down.next_probe - now),
                    Some(_) => {
                        state.probing = true;
                        return Ok(pass(true));
                    }
                }
            };
            let pause = async {
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            };
            context
                .unless_stopped(async {
                    tokio::select! { () = notified => {}, () = pause => {} }
                })
                .await?;
        }
    }
}

/// A request's permission to go to an origin; says how it went (`reached`, `failed`). A probe dropped unanswered
/// (its file stopped) lets the next waiting request probe.
pub(super) struct Pass {
    pub(super) circuit: Arc<Circuit>,
    pub(super) probe: bool,
}

impl Pass {
    /// The origin answered: it is up.
    pub(super) fn reached(mut self) {
        self.probe = false;
        let circuit = &self.circuit;
        if !circuit.troubled.load(Ordering::Acquire) {
            return;
        }
        let mut state = circuit.state.lock().expect("circuit lock");
        if state.gone.is_some() {
            return; // too late: its files have ended
        }
        *state = CircuitState::default();
        circuit.troubled.store(false, Ordering::Release);
        drop(state);
        circuit.changed.notify_waiters();
    }

    /// No connection could be made (`error` names the origin or the proxy). True when the origin is down now, so
    /// the request waits in `pass`; false while it only failed a few times (the request pauses briefly).
    pub(super) fn failed(mut self, error: &Error, context: &Context) -> bool {
        let probe = std::mem::take(&mut self.probe);
        let circuit = &self.circuit;
        let mut state = circuit.state.lock().expect("circuit lock");
        circuit.troubled.store(true, Ordering::Release);
        state.failures += 1;
        let failures = state.failures;
        let now = Instant::now();
        if probe {
            state.probing = false;
        }
        match &mut state.down {
            None if failures < CIRCUIT_THRESHOLD => return false,
            None => state.down = Some(Down { since: now, probes: 0, next_probe: now + context.backoff(1, None) }),
            Some(down) if probe => {
                down.probes += 1;
                let outage = now.duration_since(down.since);
                if outage >= context.options.outage_budget {
                    state.gone = Some(format!(
                        "{error} (no connection for {:.1} s, {failures} attempts in a row)",
                        outage.as_secs_f64()
                    ));
                } else {
                    down.next_probe = now + context.backoff(down.probes + 1, None);
                }
            }
            Some(_) => {}
        }
        drop(state);
        circuit.changed.notify_waiters();
        true
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.probe {
            self.circuit.state.lock().expect("circuit lock").probing = false;
            self.circuit.changed.notify_waiters();
        }
    }
}

/// A URL's scheme and authority as written: the key of its origin's circuit (no parsing per request).
pub(super) fn origin_key(url: &str) -> &str {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let end = url[authority..].find(['/', '?', '#']).map_or(url.len(), |i| authority + i);
    &url[..end]
}
