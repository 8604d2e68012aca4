//! Stream names: the one allow-list every entry point (RTMP app/key, SRT
//! stream id, HTTP paths, the control API) validates against, so no name can
//! escape the data directory or smuggle control bytes into logs.

use std::fmt;

use crate::error::Error;

/// Longest allowed segment (an app name, a stream name or a key).
pub const MAX_SEGMENT_LEN: usize = 128;
/// Most segments in a name (`live/<stream>/<rendition>`).
pub const MAX_SEGMENTS: usize = 4;

/// A validated Hub stream name: 1 to [`MAX_SEGMENTS`] `/`-separated segments,
/// each 1 to [`MAX_SEGMENT_LEN`] bytes of `[A-Za-z0-9_-.]`, not starting with
/// `.` (so never `.` or `..`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(String);

/// Checks one segment against the allow-list.
pub fn validate_segment(seg: &str) -> Result<(), Error> {
    if seg.is_empty() {
        return Err(Error::InvalidArgument("empty name segment".into()));
    }
    if seg.len() > MAX_SEGMENT_LEN {
        return Err(Error::InvalidArgument(format!(
            "name segment of {} bytes (max {MAX_SEGMENT_LEN})",
            seg.len()
        )));
    }
    if seg.starts_with('.') {
        return Err(Error::InvalidArgument(
            "name segment starts with '.'".into(),
        ));
    }
    if let Some(c) = seg
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(Error::InvalidArgument(format!(
            "name has a disallowed character {:?}",
            c.escape_default().to_string()
        )));
    }
    Ok(())
}

impl StreamName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, Error> {
        let mut n = 0;
        for seg in name.split('/') {
            validate_segment(seg)?;
            n += 1;
        }
        if n > MAX_SEGMENTS {
            return Err(Error::InvalidArgument(format!(
                "name has {n} segments (max {MAX_SEGMENTS})"
            )));
        }
        Ok(StreamName(name.to_owned()))
    }

    /// `<app>/<key>`, both validated as single segments.
    pub fn from_parts(app: &str, key: &str) -> Result<Self, Error> {
        validate_segment(app)?;
        validate_segment(key)?;
        Ok(StreamName(format!("{app}/{key}")))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["live/demo", "live/a-b_c.1", "live/demo/720p", "x"] {
            assert!(StreamName::new(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_traversal_and_control_bytes() {
        let long = "a".repeat(5000);
        for n in [
            "",
            "live/",
            "/live",
            "live/..",
            "live/../etc",
            "..",
            "live/.hidden",
            "live/a b",
            "live/a\0",
            "live/a\n",
            "live/%2e%2e",
            "live\\x",
            long.as_str(),
            "a/b/c/d/e",
            "live/ü",
        ] {
            assert!(StreamName::new(n).is_err(), "{n:?}");
        }
        assert!(StreamName::from_parts("live", "a/b").is_err());
    }
}
