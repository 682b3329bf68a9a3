//! Responses: a whole one for metadata calls, and one whose body is still to be read (through reqwest, or on a lean
//! connection that goes back to its origin's idle list once the body was read to its end).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::sync::OwnedSemaphorePermit;

use super::HttpClient;
use super::connection::Connection;
use super::errors::{connection_error, redacted};
use super::lean::Origin;
use crate::error::{Error, HttpErrorKind, Result};

/// A whole response, for metadata calls.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response whose body is still to be read, holding its host's connection slot until it is dropped.
pub struct StreamingResponse {
    pub(super) body: ResponseBody,
    /// For error messages (redacted when printed).
    pub(super) url: url::Url,
    pub(super) _slot: OwnedSemaphorePermit,
}

pub(super) enum ResponseBody {
    /// Through reqwest: proxies, redirects, request bodies.
    Pooled(reqwest::Response),
    /// On a lean connection (`connection`), which goes back to the idle pool once the body was read to its end.
    Direct {
        head: hyper::http::response::Parts,
        body: Incoming,
        connection: Option<Connection>,
        origin: Arc<Origin>,
        read_timeout: Duration,
        /// A read failed: the body is not to be read further.
        failed: bool,
    },
}

impl StreamingResponse {
    pub fn status(&self) -> StatusCode {
        match &self.body {
            ResponseBody::Pooled(response) => response.status(),
            ResponseBody::Direct { head, .. } => head.status,
        }
    }

    pub fn headers(&self) -> &HeaderMap {
        match &self.body {
            ResponseBody::Pooled(response) => response.headers(),
            ResponseBody::Direct { head, .. } => &head.headers,
        }
    }

    /// The next piece of the body, `None` at its end. A stall longer than the read timeout is an error.
    pub async fn chunk(&mut self, client: &HttpClient) -> Result<Option<Bytes>> {
        match &mut self.body {
            ResponseBody::Pooled(response) => response.chunk().await.map_err(|e| client.transport_error(&self.url, &e)),
            ResponseBody::Direct { body, connection, origin, read_timeout, failed, .. } => {
                if *failed {
                    return Err(Error::http(HttpErrorKind::Reset, redacted(&self.url), "the transfer failed before"));
                }
                let Some(open) = connection.as_mut() else { return Ok(None) };
                match open.next_data(body, *read_timeout).await {
                    Ok(Some(data)) => Ok(Some(data)),
                    Ok(None) => {
                        let finished = connection.take().expect("checked above");
                        if finished.reusable() {
                            origin.put_idle(finished);
                        }
                        Ok(None)
                    }
                    Err(error) => {
                        *connection = None;
                        *failed = true;
                        Err(connection_error(&self.url, error))
                    }
                }
            }
        }
    }
}
