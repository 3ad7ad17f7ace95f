//! Paged HTTP sources. The incremental cursor is the largest cursor value of the committed
//! records; each run asks for records at or after it (`updated_since` is inclusive in most
//! marketplace APIs), and records seen again at the boundary are dropped as duplicates by
//! their idempotency key. Records must come sorted by the cursor field.

use std::time::Duration;

use serde_json::{Value, json};

use super::body::{BodyError, ERROR_BODY_PREFIX, read_limited, read_prefix};
use super::{HttpSystem, retry_after};
use crate::connectors::{Batch, BatchRecords, SendFailure, SourceError};
use crate::mapping::{CompiledTemplate, Escape};
use crate::spec::raw::{PaginationStyle, SourceConfig};

/// A paged listing being read.
pub struct HttpSource {
    system: HttpSystem,
    path: CompiledTemplate,
    query: Vec<(String, CompiledTemplate)>,
    records: String,
    pagination: Option<Paging>,
    cursor_field: Option<String>,
    /// The cursor the listing was asked from; fixed for the whole run so that offsets stay
    /// meaningful.
    start_cursor: Option<Value>,
    /// The largest cursor value read so far; checkpointed with each page.
    cursor: Option<Value>,
    next: PageState,
}

struct Paging {
    style: PaginationStyle,
    param: String,
    size_param: String,
    size: u32,
    token_path: String,
}

enum PageState {
    Offset(u64),
    Page(u64),
    Token(Option<String>),
    Done,
}

/// Attempts per page before the source counts as unavailable.
const PAGE_ATTEMPTS: u32 = 3;

impl HttpSource {
    /// Prepares the listing from the flow's `from` section and the checkpointed position.
    pub fn new(
        system: HttpSystem,
        config: &SourceConfig,
        position: &Value,
    ) -> Result<Self, String> {
        let request = config
            .request
            .as_ref()
            .ok_or("an HTTP source needs `request`")?;
        let compile = |s: &str| CompiledTemplate::compile(s).map_err(|e| e.to_string());
        let query = request
            .query
            .iter()
            .map(|(k, v)| Ok((k.clone(), compile(v)?)))
            .collect::<Result<_, String>>()?;
        let pagination = config.pagination.as_ref().map(|p| Paging {
            style: p.style,
            param: p.param.clone().unwrap_or_else(|| {
                match p.style {
                    PaginationStyle::Offset => "offset",
                    PaginationStyle::Page => "page",
                    PaginationStyle::NextToken => "page_token",
                }
                .into()
            }),
            size_param: p.size_param.clone().unwrap_or_else(|| "limit".into()),
            size: p.size.unwrap_or(100).max(1),
            token_path: p
                .token_path
                .clone()
                .unwrap_or_else(|| "/next_page_token".into()),
        });
        let next = match pagination.as_ref().map(|p| p.style) {
            Some(PaginationStyle::Offset) | None => PageState::Offset(0),
            Some(PaginationStyle::Page) => PageState::Page(1),
            Some(PaginationStyle::NextToken) => PageState::Token(None),
        };
        Ok(Self {
            system,
            path: compile(&request.path)?,
            query,
            records: config.records.clone().unwrap_or_default(),
            pagination,
            cursor_field: config.cursor.clone(),
            start_cursor: position.get("cursor").filter(|c| !c.is_null()).cloned(),
            cursor: position.get("cursor").filter(|c| !c.is_null()).cloned(),
            next,
        })
    }

    /// Fetches the next page; `None` when the listing is exhausted.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        if matches!(self.next, PageState::Done) {
            return Ok(None);
        }
        let body = self.fetch_page().await?;
        let records = match body.pointer(&self.records) {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::Null) | None if !self.records.is_empty() => Vec::new(),
            _ => {
                return Err(SourceError::BadData(format!(
                    "no array of records at `{}` in the response",
                    self.records
                )));
            }
        };
        self.advance(&body, records.len());
        if records.is_empty() {
            self.next = PageState::Done;
            return Ok(None);
        }
        if let Some(field) = &self.cursor_field {
            for record in &records {
                if let Some(value) = record.get(field).filter(|v| !v.is_null())
                    && self.cursor.as_ref().is_none_or(|c| cursor_less(c, value))
                {
                    self.cursor = Some(value.clone());
                }
            }
        }
        Ok(Some(Batch {
            records: BatchRecords::Values(records),
            position: json!({"cursor": self.cursor}),
        }))
    }

    fn advance(&mut self, body: &Value, count: usize) {
        let Some(paging) = &self.pagination else {
            self.next = PageState::Done;
            return;
        };
        let short = (count as u32) < paging.size;
        self.next = match &self.next {
            PageState::Offset(_) | PageState::Page(_) if short => PageState::Done,
            PageState::Offset(offset) => PageState::Offset(offset + count as u64),
            PageState::Page(page) => PageState::Page(page + 1),
            PageState::Token(_) => match body.pointer(&paging.token_path) {
                Some(Value::String(token)) if !token.is_empty() => {
                    PageState::Token(Some(token.clone()))
                }
                _ => PageState::Done,
            },
            PageState::Done => PageState::Done,
        };
    }

    async fn fetch_page(&self) -> Result<Value, SourceError> {
        let context = json!({"cursor": self.start_cursor});
        let path = self
            .path
            .render(&context, Escape::None)
            .map_err(|e| SourceError::BadData(format!("request path: {e}")))?;
        let mut query: Vec<(String, String)> = Vec::new();
        for (name, template) in &self.query {
            // A parameter whose value is not known yet (no cursor on the first run) is left out.
            if let Ok(value) = template.render(&context, Escape::None)
                && !value.is_empty()
            {
                query.push((name.clone(), value));
            }
        }
        if let Some(paging) = &self.pagination {
            match &self.next {
                PageState::Offset(offset) => query.push((paging.param.clone(), offset.to_string())),
                PageState::Page(page) => query.push((paging.param.clone(), page.to_string())),
                PageState::Token(Some(token)) => query.push((paging.param.clone(), token.clone())),
                PageState::Token(None) | PageState::Done => {}
            }
            query.push((paging.size_param.clone(), paging.size.to_string()));
        }
        let url = format!("{}{}", self.system.base_url, path);
        let mut last = String::new();
        for attempt in 1..=PAGE_ATTEMPTS {
            match self.get(&url, &query).await {
                Ok(body) => return Ok(body),
                Err(failure) if !failure.transient => {
                    return Err(SourceError::Unavailable(format!(
                        "GET {url}: {}",
                        failure.message
                    )));
                }
                Err(failure) => {
                    tracing::warn!(url = %url, attempt, error = %failure.message, "Source page failed; will retry.");
                    last = failure.message;
                    if attempt < PAGE_ATTEMPTS {
                        let wait = failure.retry_after.unwrap_or(1 << (attempt - 1)).min(30);
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                    }
                }
            }
        }
        Err(SourceError::Unavailable(format!(
            "GET {url} failed {PAGE_ATTEMPTS} times; last: {last}"
        )))
    }

    async fn get(&self, url: &str, query: &[(String, String)]) -> Result<Value, SendFailure> {
        let mut response = self
            .system
            .client
            .get(url)
            .query(query)
            .send()
            .await
            .map_err(|err| SendFailure {
                transient: true,
                status: None,
                retry_after: None,
                message: err.to_string(),
            })?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        if !(200..300).contains(&status) {
            let prefix = read_prefix(&mut response, ERROR_BODY_PREFIX).await;
            return Err(SendFailure::from_status(
                status,
                wait,
                &String::from_utf8_lossy(&prefix),
            ));
        }
        let body = read_limited(&mut response, self.system.max_response_bytes)
            .await
            .map_err(|err| SendFailure {
                // A page over the limit is over it on every attempt: retrying cannot help.
                transient: matches!(err, BodyError::Read(_)),
                status: Some(status),
                retry_after: None,
                message: err.to_string(),
            })?;
        serde_json::from_slice(&body).map_err(|err| SendFailure {
            transient: false,
            status: Some(status),
            retry_after: None,
            message: format!("response is not JSON: {err}"),
        })
    }
}

/// Cursor order: numbers numerically, anything else as text (RFC 3339 UTC sorts as text).
fn cursor_less(current: &Value, candidate: &Value) -> bool {
    match (current.as_f64(), candidate.as_f64()) {
        (Some(a), Some(b)) => a < b,
        _ => crate::mapping::helpers::render(current) < crate::mapping::helpers::render(candidate),
    }
}
