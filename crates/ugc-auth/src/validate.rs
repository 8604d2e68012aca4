//! Field rules of the control API, applied at every entry point.

use crate::error::{Error, Result};

/// Longest stream name.
pub const MAX_STREAM_NAME: usize = 64;
/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Largest `dvr_hours` (one year).
pub const MAX_DVR_HOURS: u32 = 8760;
/// Most restream targets per stream.
pub const MAX_RESTREAM: usize = 16;
/// Longest restream URL.
pub const MAX_URL: usize = 1024;

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Stream names: 1 to 64 bytes of `[a-z0-9_-]` (lowercase, so names map
/// one-to-one onto URLs and file names on case-insensitive disks), and a
/// valid [`ugc_core::StreamPath`] segment.
pub fn stream_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_STREAM_NAME {
        return Err(invalid(
            "name",
            format!("{} bytes (1..={MAX_STREAM_NAME})", name.len()),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
    {
        return Err(invalid(
            "name",
            format!("character {} not in [a-z0-9_-]", c.escape_default()),
        ));
    }
    ugc_core::name::validate_segment(name).map_err(|e| invalid("name", e.to_string()))
}

/// Stream keys as presented by publishers: a valid name segment of at most
/// 128 bytes. (Keys we generate are 22 base64url characters, 128 random
/// bits.)
pub fn stream_key(key: &str) -> Result<()> {
    ugc_core::name::validate_segment(key).map_err(|e| match e {
        // Publishers read this reason: no "invalid argument:" prefix.
        ugc_core::Error::InvalidArgument(why) => invalid("key", why),
        other => invalid("key", other.to_string()),
    })
}

/// Titles: up to 200 characters, no control characters.
pub fn title(t: &str) -> Result<()> {
    if t.chars().count() > MAX_TITLE {
        return Err(invalid(
            "title",
            format!("longer than {MAX_TITLE} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid("title", "control character"));
    }
    Ok(())
}

/// `off`, `default` or one of the configured profile names.
pub fn transcode(t: &str, profiles: &[String]) -> Result<()> {
    if t == "off" || t == "default" || profiles.iter().any(|p| p == t) {
        Ok(())
    } else {
        Err(invalid(
            "transcode",
            format!(
                "{:?} is not off, default or a configured profile",
                t.escape_default().to_string()
            ),
        ))
    }
}

/// 0 (off) to 8760 hours.
pub fn dvr_hours(h: u32) -> Result<()> {
    if h > MAX_DVR_HOURS {
        return Err(invalid("dvr_hours", format!("{h} > {MAX_DVR_HOURS}")));
    }
    Ok(())
}

/// Up to 16 `rtmp://`, `rtmps://` or `srt://` URLs of at most 1024
/// printable ASCII characters with a host (and, for `srt://`, a port:
/// `srt://host:port?streamid=...`; the push checks its parameters and
/// says which one it cannot use).
pub fn restream(list: &[String]) -> Result<()> {
    if list.len() > MAX_RESTREAM {
        return Err(invalid(
            "restream",
            format!("{} targets (max {MAX_RESTREAM})", list.len()),
        ));
    }
    for u in list {
        let rest = u
            .strip_prefix("rtmp://")
            .or_else(|| u.strip_prefix("rtmps://"))
            .ok_or_else(|| {
                invalid(
                    "restream",
                    "URL must start with rtmp://, rtmps:// or srt://",
                )
            });
        let rest = match (rest, u.strip_prefix("srt://")) {
            (Ok(r), _) => r,
            (Err(_), Some(r)) => {
                let authority = r.split(['?', '/']).next().unwrap_or("");
                let ok = authority
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(invalid("restream", "srt:// URL needs host:port"));
                }
                r
            }
            (Err(e), None) => return Err(e),
        };
        if u.len() > MAX_URL {
            return Err(invalid("restream", format!("URL longer than {MAX_URL}")));
        }
        if !u.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "restream",
                "URL has spaces or non-ASCII characters",
            ));
        }
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("restream", "URL has no host"));
        }
    }
    Ok(())
}

/// Longest fallback file name.
pub const MAX_FALLBACK_NAME: usize = ugc_core::fallback::MAX_FILE_NAME;
/// Shortest and longest per-stream source timeout (0 also: the node's).
pub const SOURCE_TIMEOUT_MS: std::ops::RangeInclusive<u32> = 500..=60_000;

/// A stream's fallback: `slate`, `off`, an `http://` or `https://` URL of
/// at most 1024 printable ASCII characters with a host, or a file name
/// (`[A-Za-z0-9._-]`, up to 128, not starting with a dot) that the media
/// node looks up in its fallback directory, never a path: a creator
/// names what the operator put there, not files elsewhere on the node.
pub fn fallback(f: &str) -> Result<()> {
    if f == "slate" || f == "off" {
        return Ok(());
    }
    if let Some(rest) = f
        .strip_prefix("http://")
        .or_else(|| f.strip_prefix("https://"))
    {
        if f.len() > MAX_URL {
            return Err(invalid("fallback", format!("URL longer than {MAX_URL}")));
        }
        if !f.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "fallback",
                "URL has spaces or non-ASCII characters",
            ));
        }
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("fallback", "URL has no host"));
        }
        return Ok(());
    }
    if !ugc_core::fallback::plain_file_name(f) {
        return Err(invalid(
            "fallback",
            "must be slate, off, an http(s):// URL or a file name of [A-Za-z0-9._-] \
             in the server's fallback directory",
        ));
    }
    Ok(())
}

/// 0 (the media node's default) or 500 to 60,000 ms.
pub fn source_timeout_ms(ms: u32) -> Result<()> {
    if ms != 0 && !SOURCE_TIMEOUT_MS.contains(&ms) {
        return Err(invalid(
            "source_timeout_ms",
            format!(
                "{ms}: 0 (the server's) or {}..={}",
                SOURCE_TIMEOUT_MS.start(),
                SOURCE_TIMEOUT_MS.end()
            ),
        ));
    }
    Ok(())
}

/// SRT passphrases: 10 to 79 printable ASCII characters (the SRT limits).
pub fn srt_passphrase(p: &str) -> Result<()> {
    if !(10..=79).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(invalid(
            "srt_passphrase",
            "must be 10 to 79 printable ASCII characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "demo", "my-stream_2", &"x".repeat(64)] {
            assert!(stream_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Demo",
            "a/b",
            "..",
            ".a",
            "a b",
            "a\0",
            "ü",
            &"x".repeat(65),
            "a.b",
        ] {
            assert!(stream_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fields() {
        assert!(restream(&["rtmp://a/live/x".into(), "rtmps://b:443/app/k".into()]).is_ok());
        assert!(restream(&["http://a/x".into()]).is_err());
        assert!(restream(&["rtmp:///x".into()]).is_err());
        assert!(restream(&["rtmp://a b".into()]).is_err());
        assert!(restream(&["srt://a:9000?streamid=#!::r=live/x,m=publish".into()]).is_ok());
        assert!(restream(&["srt://a?streamid=x".into()]).is_err());
        assert!(restream(&["srt://:9000".into()]).is_err());
        assert!(transcode("default", &[]).is_ok());
        assert!(transcode("mobile", &["mobile".into()]).is_ok());
        assert!(transcode("x", &[]).is_err());
        assert!(dvr_hours(8761).is_err());
        assert!(srt_passphrase("short").is_err());
        assert!(srt_passphrase("long enough pass").is_ok());
        assert!(title("a\nb").is_err());
        assert!(stream_key("abc/def").is_err());
        for ok in [
            "slate",
            "off",
            "https://cdn.example/loop.mp4",
            "http://10.0.0.1:8080/a",
            "back-soon.mp4",
        ] {
            assert!(fallback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "/srv/loop.mp4",
            ".hidden",
            "a/b.mp4",
            "file:///etc/passwd",
            "https://",
            "https:///x",
            "http://a b",
            "concat:a|b",
            "loop 1.mp4",
        ] {
            assert!(fallback(bad).is_err(), "{bad:?}");
        }
        assert!(source_timeout_ms(0).is_ok());
        assert!(source_timeout_ms(500).is_ok());
        assert!(source_timeout_ms(60_000).is_ok());
        assert!(source_timeout_ms(499).is_err());
        assert!(source_timeout_ms(60_001).is_err());
    }
}
