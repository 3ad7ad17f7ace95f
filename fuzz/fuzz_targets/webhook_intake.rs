//! The webhook intake's input handling: arbitrary headers and body through the signature
//! check and the event parsing. Refusals are fine, panics are not.
//!
//! Input: one flag byte, then `name: value` header lines, an empty line, and the body. When
//! the flag's low bit is set the body is signed correctly (with the header's timestamp, or the
//! current time when there is none), so that event parsing is reached and not only the
//! refusal of a bad signature.
#![no_main]

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use switchyard::daemon::webhook::{records_of, sign, verify};
use switchyard::spec::model::{Secret, WebhookAuth};

const SECRET: &str = "fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let split = rest
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(rest.len());
    let (head, body) = rest.split_at(split);
    let body = body.get(2..).unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value[1..].trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    let now = 1_700_000_000;
    if flags & 1 == 1 {
        let timestamp = headers
            .get("x-timestamp")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(now);
        if let Ok(signature) = HeaderValue::from_str(&sign(SECRET.as_bytes(), timestamp, body)) {
            headers.insert("x-signature", signature);
        }
    }
    let auth = WebhookAuth {
        secret_env: "FUZZ_SECRET".into(),
        secret: Secret::new(SECRET),
        signature_header: "x-signature".into(),
        timestamp_header: "x-timestamp".into(),
        event_id_header: "x-event-id".into(),
        tolerance: Duration::from_secs(300),
        max_body: 1 << 20,
    };
    if verify(&auth, &headers, body, now).is_ok()
        && let Ok(text) = std::str::from_utf8(body)
    {
        let _ = records_of(text);
    }
});
