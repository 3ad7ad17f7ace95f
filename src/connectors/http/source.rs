//! Paged HTTP sources. The incremental cursor is the largest cursor value of the committed
//! records; each run asks for records at or after it (`updated_since` is inclusive in most
//! marketplace APIs), and records seen again at the boundary are dropped as duplicates by
//! their idempotency key. Records must come sorted by the cursor field.
//!
//! **Paging while the source changes.** With offset or page-number paging, a record updated
//! during a run moves to the end of the listing and every later offset shifts down by one: a
//! reader that keeps one query and walks the offsets skips the record that slid across each
//! page boundary, and the cursor then moves past it for good. So when the query carries the
//! cursor (a parameter rendered from `{{cursor}}`), every page is asked *from the cursor of
//! the last record read* (keyset paging on the cursor field), with offsets used only to step
//! through records that share one cursor value. A record that moves can then only move
//! forward, into what is still to be read. Records that share the boundary value are read
//! again (they are recognised and dropped here), and a run of ties longer than a page is
//! stepped through with half a page of overlap.
//!
//! **A listing always ends.** An API that hands out a next-token (or `Link`, or seek key)
//! it handed out before, or a page identical to the one before, would be asked forever: the
//! listing ends there with a [`SourceNotice`] instead. So does a run that reaches
//! `max_pages`. The records read so far are delivered and checkpointed as usual and the next
//! run continues from the cursor.
//!
//! **Failures are the runtime's to retry.** A page that fails is returned as a
//! [`ConnectorError`] (retryable or not, with the wait the API asked for in `Retry-After` or
//! its rate-limit reset headers); the source's state is unchanged, so the runtime asks for the
//! same page again under the flow's `retry:` policy, on its own clock.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use serde_json::{Value, json};

use super::HttpFromConfig;
use super::body::{BodyError, ERROR_BODY_PREFIX, read_limited, read_prefix};
use super::config::PaginationStyle;
use super::{HttpSystem, retry_after};
use crate::connectors::{
    Batch, BatchRecords, ConnectorError, SourceNotice, source_bad_data, source_unavailable,
};
use crate::mapping::{CompiledTemplate, Escape};

/// A paged listing being read.
pub struct HttpSource {
    system: HttpSystem,
    path: CompiledTemplate,
    query: Vec<(String, CompiledTemplate)>,
    /// Per-call headers, each value rendered per page (over `cursor`).
    headers: Vec<(String, CompiledTemplate)>,
    records: String,
    pagination: Option<Paging>,
    cursor_field: Option<String>,
    /// Whether pages are asked from the last cursor read (see the module docs); otherwise the
    /// cursor the run started from is kept for the whole listing and offsets walk it.
    keyset: bool,
    /// The cursor the next page is asked from: the committed cursor at first, then (with
    /// keyset paging) the cursor of the last record read.
    query_cursor: Option<Value>,
    /// Records at `query_cursor` already read, in listing order (keyset paging).
    ties: u64,
    /// Fingerprints of the records at `query_cursor` returned so far, with how many times
    /// each was, so that the overlap read again is not handed out twice while a record the
    /// source itself lists twice still is.
    tie_prints: HashMap<u64, u32>,
    /// More records at `query_cursor` than a page: stepped through with offsets.
    long_run: bool,
    /// A pass reading the run at `query_cursor` again is under way; `true` once it found a
    /// record not read before.
    verifying: Option<bool>,
    /// Passes over the current run of ties.
    passes: u32,
    /// Pages in a row that brought nothing new.
    stale_pages: u32,
    /// The largest cursor value read so far; checkpointed with each page.
    cursor: Option<Value>,
    next: PageState,
    /// Pages fetched this run, against `max_pages`.
    pages: u32,
    /// Next-tokens, links and seek keys followed this run: one seen again ends the listing.
    followed: HashSet<String>,
    /// Fingerprint of the previous page's records (positional paging without keyset).
    last_page: Option<u64>,
    /// Notices not yet taken by the runtime.
    notices: Vec<SourceNotice>,
}

struct Paging {
    style: PaginationStyle,
    param: String,
    size_param: String,
    size: u32,
    token_path: String,
    /// `seek`: JSON Pointer to the key in the last record of a page.
    from: String,
    max_pages: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PageState {
    Offset(u64),
    Page(u64),
    Token(Option<String>),
    /// `next_link`: the URL of the next page (none for the first).
    Link(Option<String>),
    /// `seek`: the key of the last record read (none for the first page).
    Seek(Option<String>),
    Done,
}

/// Pages read per run when `max_pages` is not set: far more than a polling run reads, few
/// enough that a listing that never ends stops within minutes.
pub(crate) const DEFAULT_MAX_PAGES: u32 = 10_000;

/// Pages in a row that bring nothing new before a listing is taken to be stuck.
const MAX_STALE_PAGES: u32 = 3;

/// Passes over one run of ties, each finding something new, before the listing stops there.
const MAX_TIE_PASSES: u32 = 8;

/// The first page of a listing.
fn first_page(style: PaginationStyle) -> PageState {
    match style {
        PaginationStyle::Page => PageState::Page(1),
        _ => PageState::Offset(0),
    }
}

/// The page after `ties` records sharing the cursor value: ties shorter than a page are read
/// again from their first; longer runs are stepped through with half a page of overlap
/// (offsets), or page by page (page numbers), and then read again whole before the cursor
/// leaves the value.
fn step(style: PaginationStyle, ties: u64, size: u64) -> PageState {
    match style {
        PaginationStyle::Page => PageState::Page(ties / size + 1),
        _ if ties < size => PageState::Offset(0),
        _ => PageState::Offset(ties - size / 2),
    }
}

impl HttpSource {
    /// Prepares the listing from the flow's `from` section and the checkpointed position.
    pub fn new(
        system: HttpSystem,
        config: &HttpFromConfig,
        position: &Value,
    ) -> Result<Self, String> {
        let request = config
            .request
            .as_ref()
            .ok_or("an HTTP source needs `request`")?;
        let system = system
            .for_operation(&reqwest::Method::GET, request)
            .map_err(|e| e.to_string())?;
        let compile = |s: &str| CompiledTemplate::compile(s).map_err(|e| e.to_string());
        let query: Vec<(String, CompiledTemplate)> = request
            .query
            .iter()
            .map(|(k, v)| Ok((k.clone(), compile(v)?)))
            .collect::<Result<_, String>>()?;
        let headers: Vec<(String, CompiledTemplate)> = request
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), compile(v)?)))
            .collect::<Result<_, String>>()?;
        let pagination = config.pagination.as_ref().map(|p| Paging {
            style: p.style,
            param: p.param.clone().unwrap_or_else(|| {
                match p.style {
                    PaginationStyle::Offset => "offset",
                    PaginationStyle::Page => "page",
                    PaginationStyle::NextToken | PaginationStyle::NextLink => "page_token",
                    PaginationStyle::Seek => "after",
                }
                .into()
            }),
            size_param: p.size_param.clone().unwrap_or_else(|| "limit".into()),
            size: p.size.unwrap_or(100).max(1),
            token_path: p
                .token_path
                .clone()
                .unwrap_or_else(|| "/next_page_token".into()),
            from: p.from.clone().unwrap_or_else(|| "/id".into()),
            max_pages: p.max_pages.unwrap_or(DEFAULT_MAX_PAGES).max(1),
        });
        let next = match pagination.as_ref().map(|p| p.style) {
            Some(PaginationStyle::Offset) | None => PageState::Offset(0),
            Some(PaginationStyle::Page) => PageState::Page(1),
            Some(PaginationStyle::NextToken) => PageState::Token(None),
            Some(PaginationStyle::NextLink) => PageState::Link(None),
            Some(PaginationStyle::Seek) => PageState::Seek(None),
        };
        let positional = matches!(
            pagination.as_ref().map(|p| p.style),
            Some(PaginationStyle::Offset | PaginationStyle::Page)
        );
        let keyset = positional && config.cursor.is_some() && query_uses_cursor(&query);
        let committed = position.get("cursor").filter(|c| !c.is_null()).cloned();
        Ok(Self {
            system,
            path: compile(&request.path)?,
            query,
            headers,
            records: config.records.clone().unwrap_or_default(),
            pagination,
            cursor_field: config.cursor.clone(),
            keyset,
            query_cursor: committed.clone(),
            ties: 0,
            tie_prints: HashMap::new(),
            long_run: false,
            verifying: None,
            passes: 0,
            stale_pages: 0,
            cursor: committed,
            next,
            pages: 0,
            followed: HashSet::new(),
            last_page: None,
            notices: Vec::new(),
        })
    }

    /// Fetches the next page; `None` when the listing is exhausted.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        loop {
            if self.next == PageState::Done {
                return Ok(None);
            }
            if let Some(paging) = &self.pagination
                && self.pages >= paging.max_pages
            {
                let max = paging.max_pages;
                self.notice(
                    "page-cap",
                    format!(
                        "read {max} pages (`max_pages`) this run; the listing stops here and \
                         the next run continues from the checkpoint"
                    ),
                );
                self.next = PageState::Done;
                return Ok(None);
            }
            let asked = self.next.clone();
            // On failure nothing changed: asked again, this is the same page.
            let (body, link) = self.fetch_page().await?;
            self.pages += 1;
            let records = match body.pointer(&self.records) {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None if !self.records.is_empty() => Vec::new(),
                _ => {
                    return Err(source_bad_data(format!(
                        "no array of records at `{}` in the response",
                        self.records
                    )));
                }
            };
            if records.is_empty() {
                self.next = PageState::Done;
                return Ok(None);
            }
            let records = if self.keyset {
                self.advance_keyset(asked, records)?
            } else {
                let print = page_fingerprint(&records);
                if self.pagination.is_some() && self.last_page == Some(print) {
                    self.notice(
                        "identical-page",
                        format!(
                            "page {} is identical to the page before (does the API ignore \
                             the paging parameter?); the listing stops here",
                            self.pages
                        ),
                    );
                    self.next = PageState::Done;
                    return Ok(None);
                }
                self.last_page = Some(print);
                self.advance(&body, link, &records);
                records
            };
            if let Some(field) = &self.cursor_field {
                for record in &records {
                    if let Some(value) = record.get(field).filter(|v| !v.is_null())
                        && self
                            .cursor
                            .as_ref()
                            .is_none_or(|c| cursor_cmp(c, value) == Ordering::Less)
                    {
                        self.cursor = Some(value.clone());
                    }
                }
            }
            // A page made only of the overlap read again carries nothing new: read on.
            if records.is_empty() {
                continue;
            }
            return Ok(Some(Batch {
                records: BatchRecords::Values(records),
                position: json!({"cursor": self.cursor}),
            }));
        }
    }

    /// What the listing noticed since last asked (see [`SourceNotice`]).
    pub fn take_notices(&mut self) -> Vec<SourceNotice> {
        std::mem::take(&mut self.notices)
    }

    /// Keyset paging: drops what was read before (records before the cursor the page was
    /// asked from, and the overlap at it), and decides where the next page starts.
    fn advance_keyset(
        &mut self,
        asked: PageState,
        page: Vec<Value>,
    ) -> Result<Vec<Value>, ConnectorError> {
        let (Some(paging), Some(field)) = (&self.pagination, &self.cursor_field) else {
            return Ok(page);
        };
        let size = u64::from(paging.size);
        let style = paging.style;
        let read = page.len() as u64;
        let offset = match asked {
            PageState::Offset(offset) => offset,
            PageState::Page(page) => page.saturating_sub(1) * size,
            PageState::Token(_) | PageState::Link(_) | PageState::Seek(_) | PageState::Done => 0,
        };
        let cursor_of = |record: &Value| record.get(field).filter(|v| !v.is_null()).cloned();
        let boundary = self.query_cursor.clone();
        let position = |record: &Value| match (&boundary, cursor_of(record)) {
            (_, None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Greater,
            (Some(b), Some(c)) => cursor_cmp(&c, b),
        };
        // Before the boundary: read already (a filter coarser than the cursor values, such as
        // whole seconds, returns some again). At it: the overlap, recognised by fingerprint.
        let mut overlap = self.tie_prints.clone();
        let mut fresh_ties = Vec::new();
        let mut beyond = Vec::new();
        for record in page {
            match position(&record) {
                Ordering::Less => {}
                Ordering::Equal => match overlap.get_mut(&fingerprint(&record)) {
                    Some(seen) if *seen > 0 => *seen -= 1,
                    _ => fresh_ties.push(record),
                },
                Ordering::Greater => beyond.push(record),
            }
        }
        for record in &fresh_ties {
            *self.tie_prints.entry(fingerprint(record)).or_default() += 1;
        }
        if self.verifying.is_some() && !fresh_ties.is_empty() {
            self.verifying = Some(true);
        }
        let at_end = read < size;
        let moving = !beyond.is_empty() || at_end;
        let mut out = fresh_ties;
        if moving && self.long_run {
            match self.verifying {
                // A run of ties longer than a page was stepped through with offsets: a tie
                // updated meanwhile may have pulled an unread one behind the offset. Before
                // the cursor leaves the value, the run is read again from its first record,
                // until a whole pass finds nothing new (records can only leave the value).
                None | Some(true) => {
                    self.passes += 1;
                    if self.passes > MAX_TIE_PASSES {
                        let message = format!(
                            "records sharing cursor value {} kept changing while read \
                             ({MAX_TIE_PASSES} passes); the listing stops at that value and \
                             the next run resumes there",
                            cursor_text(self.query_cursor.as_ref())
                        );
                        self.notice("stale-pages", message);
                        self.next = PageState::Done;
                        return Ok(out);
                    }
                    self.verifying = Some(false);
                    self.next = first_page(style);
                    return Ok(out);
                }
                Some(false) => {
                    self.long_run = false;
                    self.verifying = None;
                    self.passes = 0;
                }
            }
        }
        if self.verifying.is_some() {
            // Within a pass: step on with the same overlap as the first reading.
            self.ties = offset + read;
            self.next = step(style, self.ties, size);
            return Ok(out);
        }
        if let Some(last) = beyond.iter().filter_map(cursor_of).max_by(cursor_cmp) {
            // The cursor moves: the ties to step over are the page's records at its new value.
            self.ties = 0;
            self.tie_prints.clear();
            for record in &beyond {
                if cursor_of(record).is_some_and(|c| cursor_cmp(&c, &last) == Ordering::Equal) {
                    self.ties += 1;
                    *self.tie_prints.entry(fingerprint(record)).or_default() += 1;
                }
            }
            self.query_cursor = Some(last);
            self.stale_pages = 0;
        } else if out.is_empty() && beyond.is_empty() {
            // Nothing new and the cursor did not move: an API that ignores the offset, or
            // one that keeps answering the same page.
            self.stale_pages += 1;
            self.ties = offset + read;
        } else {
            self.ties = offset + read;
            self.stale_pages = 0;
        }
        out.extend(beyond);
        self.next = if at_end {
            PageState::Done
        } else if self.stale_pages >= MAX_STALE_PAGES {
            let message = format!(
                "the listing returned nothing new for {MAX_STALE_PAGES} pages (does the API \
                 ignore the offset or page parameter?); it stops here and the next run \
                 resumes at cursor {}",
                cursor_text(self.query_cursor.as_ref())
            );
            self.notice("stale-pages", message);
            PageState::Done
        } else {
            if self.ties >= size {
                self.long_run = true;
            }
            step(style, self.ties, size)
        };
        Ok(out)
    }

    /// Where the next page starts after a page of `records` (positional or token paging).
    fn advance(&mut self, body: &Value, link: Option<String>, records: &[Value]) {
        let Some(paging) = &self.pagination else {
            self.next = PageState::Done;
            return;
        };
        let count = records.len();
        let short = (count as u32) < paging.size;
        let next = match &self.next {
            PageState::Offset(_) | PageState::Page(_) | PageState::Seek(_) if short => {
                PageState::Done
            }
            PageState::Offset(offset) => PageState::Offset(offset + count as u64),
            PageState::Page(page) => PageState::Page(page + 1),
            PageState::Token(_) => match body.pointer(&paging.token_path) {
                Some(Value::String(token)) if !token.is_empty() => {
                    PageState::Token(Some(token.clone()))
                }
                _ => PageState::Done,
            },
            PageState::Link(_) => link.map_or(PageState::Done, |url| PageState::Link(Some(url))),
            PageState::Seek(_) => match records.last().and_then(|r| r.pointer(&paging.from)) {
                Some(Value::String(key)) if !key.is_empty() => PageState::Seek(Some(key.clone())),
                Some(key @ Value::Number(_)) => PageState::Seek(Some(key.to_string())),
                _ => PageState::Done,
            },
            PageState::Done => PageState::Done,
        };
        let followed = match &next {
            PageState::Token(Some(value)) => Some(("next-token", value)),
            PageState::Link(Some(value)) => Some(("next link", value)),
            PageState::Seek(Some(value)) => Some(("seek key", value)),
            _ => None,
        };
        if let Some((what, value)) = followed
            && !self.followed.insert(value.clone())
        {
            let message = format!(
                "the API returned {what} {value:?} a second time this run; following it would \
                 read the same pages again forever, so the listing stops here"
            );
            self.notice("repeated-token", message);
            self.next = PageState::Done;
            return;
        }
        self.next = next;
    }

    /// Records a notice for the runtime (which logs and counts it).
    fn notice(&mut self, reason: &'static str, message: String) {
        self.notices.push(SourceNotice { reason, message });
    }

    /// Fetches the page `self.next` points at: its body, and the `Link` header's next URL.
    async fn fetch_page(&self) -> Result<(Value, Option<String>), ConnectorError> {
        if let PageState::Link(Some(url)) = &self.next {
            // The link is the whole next request, query and paging included; the per-call
            // headers still go with it.
            let headers = self.render_headers(&json!({"cursor": self.query_cursor}))?;
            return self
                .get(url, &[], &headers)
                .await
                .map_err(|err| page_failed(url, err));
        }
        let context = json!({"cursor": self.query_cursor});
        let path = self
            .path
            .render(&context, Escape::None)
            .map_err(|e| source_bad_data(format!("request path: {e}")))?;
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
                PageState::Token(Some(token)) | PageState::Seek(Some(token)) => {
                    query.push((paging.param.clone(), token.clone()))
                }
                PageState::Token(None)
                | PageState::Seek(None)
                | PageState::Link(_)
                | PageState::Done => {}
            }
            query.push((paging.size_param.clone(), paging.size.to_string()));
        }
        let headers = self.render_headers(&context)?;
        let url = format!("{}{}", self.system.base_url, path);
        self.get(&url, &query, &headers)
            .await
            .map_err(|err| page_failed(&url, err))
    }

    /// The per-call `headers:` rendered over `context` (a header whose value is not known yet,
    /// such as `{{cursor}}` on a first run, is left out).
    fn render_headers(
        &self,
        context: &Value,
    ) -> Result<Vec<(String, reqwest::header::HeaderValue)>, ConnectorError> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, template) in &self.headers {
            // Like a query parameter, a header whose value is not known yet is left out.
            if let Ok(value) = template.render(context, Escape::None)
                && !value.is_empty()
            {
                let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    source_bad_data(format!(
                        "request header `{name}`: the rendered value is not a valid header \
                         value (a line break or another control character)"
                    ))
                })?;
                headers.push((name.clone(), value));
            }
        }
        Ok(headers)
    }

    async fn get(
        &self,
        url: &str,
        query: &[(String, String)],
        headers: &[(String, reqwest::header::HeaderValue)],
    ) -> Result<(Value, Option<String>), ConnectorError> {
        let mut request = self.system.request(reqwest::Method::GET, url).query(query);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.clone());
        }
        let mut response = self
            .system
            .send(request)
            .await
            .map_err(|err| err.into_connector_error(""))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers()).or_else(|| {
            (status == 429)
                .then(|| rate_limit_reset(response.headers()))
                .flatten()
        });
        if !(200..300).contains(&status) {
            let prefix = read_prefix(&mut response, ERROR_BODY_PREFIX).await;
            return Err(ConnectorError::from_status(
                status,
                wait.map(Duration::from_secs),
                &String::from_utf8_lossy(&prefix),
            ));
        }
        let body = read_limited(&mut response, self.system.max_response_bytes)
            .await
            .map_err(|err| ConnectorError {
                // A page over the limit is over it on every attempt: retrying cannot help.
                retryable: matches!(err, BodyError::Read(_)),
                status: Some(status),
                ..ConnectorError::unavailable(err.to_string())
            })?;
        let link = next_link(response.url(), response.headers());
        let body = serde_json::from_slice(&body).map_err(|err| ConnectorError {
            retryable: false,
            status: Some(status),
            ..ConnectorError::unavailable(format!("response is not JSON: {err}"))
        })?;
        Ok((body, link))
    }
}

/// A page that could not be read, as the runtime retries it: retryable or not as the failure
/// was, with the wait the API asked for.
fn page_failed(url: &str, failure: ConnectorError) -> ConnectorError {
    let url = crate::redact::redact(url);
    ConnectorError {
        retryable: failure.retryable,
        retry_after: failure.retry_after,
        status: failure.status,
        ..source_unavailable(format!("GET {url}: {}", failure.message))
    }
}

/// The wait a 429 asks for in rate-limit headers when it has no `Retry-After`:
/// `RateLimit-Reset`/`X-RateLimit-Reset` as seconds to wait, or (a value larger than a day)
/// as the Unix time the window resets at.
fn rate_limit_reset(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = ["ratelimit-reset", "x-ratelimit-reset", "x-rate-limit-reset"]
        .iter()
        .find_map(|name| headers.get(*name))?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    const DAY: u64 = 24 * 60 * 60;
    if value <= DAY {
        return Some(value);
    }
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    Some(value.saturating_sub(now))
}

/// The `rel="next"` target of a response's `Link` headers, resolved against its URL.
fn next_link(url: &reqwest::Url, headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(link_rel_next)
        .and_then(|target| url.join(&target).ok())
        .map(String::from)
}

/// The target of the `rel="next"` link in one `Link` header value (RFC 8288): links are
/// `<target>; param=value; ...`, separated by commas (a target may itself hold commas).
fn link_rel_next(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        // The parameters run to the next link; the comma before it is no part of them.
        let params = after[..params_end].trim_end().trim_end_matches(',');
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &after[params_end..];
    }
}

/// A fingerprint of a whole page's records, to recognise a page served twice in a row.
fn page_fingerprint(records: &[Value]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for record in records {
        record.to_string().hash(&mut hasher);
    }
    hasher.finish()
}

/// A cursor value for a message.
fn cursor_text(cursor: Option<&Value>) -> String {
    cursor.map_or_else(|| "(none)".into(), |c| c.to_string())
}

/// Whether any query parameter is rendered from the cursor: rendering with two different
/// cursors gives two different queries.
fn query_uses_cursor(query: &[(String, CompiledTemplate)]) -> bool {
    let render = |cursor: &str| {
        query
            .iter()
            .map(|(_, t)| t.render(&json!({ "cursor": cursor }), Escape::None).ok())
            .collect::<Vec<_>>()
    };
    render("2000-01-01T00:00:00Z") != render("2001-01-01T00:00:00Z")
}

/// Cursor order: numbers numerically (exactly for integers), numeric strings as numbers,
/// RFC 3339 timestamps as instants (so `…00.5Z` comes after `…00Z` whatever the precision or
/// offset), anything else as text.
fn cursor_cmp(a: &Value, b: &Value) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
        return x.total_cmp(&y);
    }
    let (x, y) = (
        crate::mapping::helpers::render(a),
        crate::mapping::helpers::render(b),
    );
    if let (Ok(p), Ok(q)) = (x.parse::<i128>(), y.parse::<i128>()) {
        return p.cmp(&q);
    }
    if let (Ok(p), Ok(q)) = (
        x.parse::<rust_decimal::Decimal>(),
        y.parse::<rust_decimal::Decimal>(),
    ) {
        return p.cmp(&q);
    }
    match (x.parse::<jiff::Timestamp>(), y.parse::<jiff::Timestamp>()) {
        (Ok(p), Ok(q)) => p.cmp(&q),
        _ => x.cmp(&y),
    }
}

/// A fingerprint of a record as read, to recognise it when a page overlap returns it again.
fn fingerprint(record: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    record.to_string().hash(&mut hasher);
    hasher.finish()
}

#[async_trait::async_trait]
impl crate::connectors::Source for HttpSource {
    // Pages come as the system serves them; the runtime's batch size does not apply.
    async fn next_batch(&mut self, _max_records: usize) -> Result<Option<Batch>, ConnectorError> {
        HttpSource::next_batch(self).await
    }

    fn take_notices(&mut self) -> Vec<SourceNotice> {
        HttpSource::take_notices(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_compare_as_numbers_instants_or_text() {
        assert_eq!(cursor_cmp(&json!(9), &json!(10)), Ordering::Less);
        // As text `.` sorts before `Z`; as instants half a second is later.
        assert_eq!(
            cursor_cmp(
                &json!("2025-03-04T10:00:00.5Z"),
                &json!("2025-03-04T10:00:00Z")
            ),
            Ordering::Greater
        );
        assert_eq!(
            cursor_cmp(
                &json!("2025-03-04T11:00:00+01:00"),
                &json!("2025-03-04T10:00:00Z")
            ),
            Ordering::Equal
        );
        assert_eq!(cursor_cmp(&json!("b"), &json!("a")), Ordering::Greater);
    }

    #[test]
    fn link_headers_give_the_next_target() {
        assert_eq!(
            link_rel_next(
                r#"<https://a.example/o?page=2&x=1,2>; rel="next", <https://a.example/o?page=9>; rel="last""#
            ),
            Some("https://a.example/o?page=2&x=1,2".into())
        );
        assert_eq!(
            link_rel_next(r#"<https://a.example/o?page=1>; rel="prev", </o?page=3>; rel=next"#),
            Some("/o?page=3".into())
        );
        assert_eq!(
            link_rel_next(r#"<https://a.example/o?page=1>; rel="prev""#),
            None
        );
        assert_eq!(link_rel_next("garbage"), None);
    }
}
