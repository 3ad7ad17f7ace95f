//! A flow test's scripted source: a loopback HTTP server answering the flow's HTTP source
//! with the case's `source_pages`, one per request in order, so paging, retries and guards
//! are exercised by the real source code rather than a stand-in.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::spec::raw::SourcePage;

/// The pages left and the requests seen.
#[derive(Debug)]
struct Script {
    pages: Mutex<VecDeque<SourcePage>>,
    requests: AtomicU64,
}

/// A running scripted source; dropping it stops the server.
#[derive(Debug)]
pub(crate) struct ScriptedSource {
    script: Arc<Script>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedSource {
    /// Starts serving `pages` on 127.0.0.1.
    pub(crate) async fn start(pages: &[SourcePage]) -> std::io::Result<Self> {
        let script = Arc::new(Script {
            pages: Mutex::new(pages.iter().cloned().collect()),
            requests: AtomicU64::new(0),
        });
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { script, addr, task })
    }

    /// The base URL the flow's source system is pointed at.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far (scripted or not).
    pub(crate) fn requests(&self) -> u64 {
        self.script.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The next scripted page; once they run out, a 404 that says so (a source asking for more
/// than the case scripts is a finding, not something to paper over).
async fn answer(State(script): State<Arc<Script>>) -> Response {
    script.requests.fetch_add(1, Ordering::SeqCst);
    let page = script
        .pages
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop_front();
    let Some(page) = page else {
        return (
            StatusCode::NOT_FOUND,
            "the flow test scripts no more source pages",
        )
            .into_response();
    };
    let status = page
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body = match (&page.raw, &page.body) {
        (Some(raw), _) => raw.clone(),
        (None, Some(body)) => body.to_string(),
        (None, None) => String::new(),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(seconds) = page.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
