//! Reading response bodies within a bound: in chunks, stopping at the limit, so that a huge or
//! endless response costs at most the limit in memory (STYLE.md 18).

use crate::spec::describe_size;

/// A body that could not be read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// Longer than the limit (declared in `Content-Length`, or found while reading).
    #[error(
        "the response body is larger than {} (`max_response_size` of this system; raise it \
         under the system's `http` section in switchyard.yaml if such responses are expected)",
        describe_size(*limit)
    )]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The connection failed while reading.
    #[error("reading the response body failed: {0}")]
    Read(#[from] reqwest::Error),
}

/// The most of an error response's body that is read: the failure message quotes its start.
pub(crate) const ERROR_BODY_PREFIX: usize = 4 * 1024;

/// Reads the whole body if it is at most `limit` bytes.
pub(crate) async fn read_limited(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|declared| declared > limit)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads at most the first `limit` bytes of the body and leaves the rest unread; a failure
/// while reading keeps what arrived. For error responses, which are only quoted.
pub(crate) async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> Vec<u8> {
    let mut prefix = Vec::new();
    while prefix.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - prefix.len();
                prefix.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    prefix
}
