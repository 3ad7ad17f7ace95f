//! An error as one line of text with its causes: drivers' own messages ("error connecting to
//! server") do not say why, their sources do.

/// `err` followed by each of its causes, `: `-separated; a cause whose text the message
/// already ends with (wrappers that quote their source) is not repeated.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::with_causes;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Wrapper(String, #[source] std::io::Error);

    #[test]
    fn causes_follow_the_message_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let quoting = Wrapper("connecting: refused".into(), refused);
        assert_eq!(with_causes(&quoting), "connecting: refused");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let plain = Wrapper("connecting".into(), refused);
        assert_eq!(with_causes(&plain), "connecting: refused");
    }
}
