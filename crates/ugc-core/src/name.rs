//! Stream names: the one allow-list every entry point (RTMP app/key, SRT
//! stream id, HTTP paths, the control API) validates against, so no name can
//! escape the data directory or smuggle control bytes into logs.

use std::fmt;

use crate::error::Error;

/// Longest allowed segment (an app name, a stream name or a key).
pub const MAX_SEGMENT_LEN: usize = 128;

/// Checks one segment against the allow-list: 1 to [`MAX_SEGMENT_LEN`]
/// bytes of `[A-Za-z0-9_-.]`, not starting with `.` (so never `.` or `..`).
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

/// The app of streams whose publish URLs and play URLs name no other
/// (`rtmp://host/live/<key>`, `/live/<stream>/index.m3u8`).
pub const DEFAULT_APP: &str = "live";

/// Where a live stream is: `<app>/<name>`, a published stream, or
/// `<app>/<name>/<rendition>`, one rendition of its transcoding ladder. Each
/// part is a validated segment ([`validate_segment`]), so a path never
/// escapes a directory or smuggles control bytes into logs.
///
/// This is the one typed name every stage uses (the [`crate::Hub`], the
/// packager, the archive, the origin, the control plane): strings are for
/// users (URLs, config), parsed once at the edge with [`StreamPath::parse`]
/// and rendered with `Display` (`live/demo`, `live/demo/720p`).
///
/// ```
/// use ugc_core::StreamPath;
///
/// let src = StreamPath::live("demo")?;
/// let hd = src.with_rendition("720p")?;
/// assert_eq!(hd.to_string(), "live/demo/720p");
/// assert_eq!((hd.app(), hd.name(), hd.rendition()), ("live", "demo", Some("720p")));
/// assert_eq!(hd.source(), src);
/// assert_eq!(StreamPath::parse("live/demo/720p")?, hd);
/// assert!(StreamPath::parse("live/../etc").is_err());
/// # Ok::<(), ugc_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamPath {
    /// `app/name[/rendition]`.
    full: Box<str>,
    /// Where `name` starts and ends in `full`.
    name: (usize, usize),
}

impl StreamPath {
    /// The published stream `name` of `app`.
    pub fn new(app: &str, name: &str) -> Result<Self, Error> {
        validate_segment(app)?;
        validate_segment(name)?;
        Ok(StreamPath {
            full: format!("{app}/{name}").into(),
            name: (app.len() + 1, app.len() + 1 + name.len()),
        })
    }

    /// The published stream `name` of the [`DEFAULT_APP`].
    pub fn live(name: &str) -> Result<Self, Error> {
        Self::new(DEFAULT_APP, name)
    }

    /// Rendition `rendition` of this stream (of its source, if this is a
    /// rendition already).
    pub fn with_rendition(&self, rendition: &str) -> Result<Self, Error> {
        validate_segment(rendition)?;
        let source = self.source();
        Ok(StreamPath {
            full: format!("{}/{rendition}", source.full).into(),
            name: source.name,
        })
    }

    /// Parses `app/name` or `app/name/rendition`.
    pub fn parse(path: &str) -> Result<Self, Error> {
        let mut parts = path.split('/');
        let (Some(app), Some(name)) = (parts.next(), parts.next()) else {
            return Err(Error::InvalidArgument(format!(
                "stream path {:?} is not <app>/<name>[/<rendition>]",
                path.escape_default().to_string()
            )));
        };
        let base = Self::new(app, name)?;
        match (parts.next(), parts.next()) {
            (None, _) => Ok(base),
            (Some(r), None) => base.with_rendition(r),
            (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
                "stream path {:?} has more than three segments",
                path.escape_default().to_string()
            ))),
        }
    }

    /// The app (`live`).
    pub fn app(&self) -> &str {
        &self.full[..self.name.0 - 1]
    }

    /// The stream's name within its app.
    pub fn name(&self) -> &str {
        &self.full[self.name.0..self.name.1]
    }

    /// The rendition, if this is one rendition of a ladder.
    pub fn rendition(&self) -> Option<&str> {
        self.full.get(self.name.1 + 1..)
    }

    /// The published stream this is a rendition of (itself if it is none).
    pub fn source(&self) -> StreamPath {
        StreamPath {
            full: self.full[..self.name.1].into(),
            name: self.name,
        }
    }

    /// Whether this is a published stream (no rendition).
    pub fn is_source(&self) -> bool {
        self.name.1 == self.full.len()
    }

    /// `app/name[/rendition]`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for StreamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for StreamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.full)
    }
}

impl PartialEq<str> for StreamPath {
    fn eq(&self, other: &str) -> bool {
        &*self.full == other
    }
}

impl PartialEq<&str> for StreamPath {
    fn eq(&self, other: &&str) -> bool {
        &*self.full == *other
    }
}

impl std::str::FromStr for StreamPath {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for n in ["live/demo", "live/a-b_c.1", "live/demo/720p", "other/x"] {
            let p = StreamPath::parse(n).unwrap();
            assert_eq!(p.as_str(), n);
            assert_eq!(p.to_string().parse::<StreamPath>().unwrap(), p);
        }
        let p = StreamPath::parse("tv/news/360p").unwrap();
        assert_eq!(
            (p.app(), p.name(), p.rendition()),
            ("tv", "news", Some("360p"))
        );
        assert!(!p.is_source());
        assert_eq!(p.source().as_str(), "tv/news");
        assert!(p.source().is_source());
        assert_eq!(p.source().rendition(), None);
        assert_eq!(p.with_rendition("720p").unwrap().as_str(), "tv/news/720p");
    }

    #[test]
    fn rejects_traversal_and_control_bytes() {
        let long = format!("live/{}", "a".repeat(5000));
        for n in [
            "",
            "x",
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
            "a/b/c/d",
            "live/a/b/",
            "live/ü",
        ] {
            assert!(StreamPath::parse(n).is_err(), "{n:?}");
        }
        assert!(StreamPath::new("live", "a/b").is_err());
        assert!(
            StreamPath::live("ok")
                .unwrap()
                .with_rendition("..")
                .is_err()
        );
    }
}
