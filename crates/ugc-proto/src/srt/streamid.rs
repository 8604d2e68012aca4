//! SRT stream ids: the access-control syntax (`#!::r=live/<key>,m=publish`,
//! with `u=`, `s=`, `h=`, `t=`) and the bare form (`<key>` or `live/<key>`),
//! as a pure parser.
//!
//! Reference: the SRT Access Control guidelines (Haivision `srt` repository,
//! `docs/features/access-control.md`): a stream id starting with `#!::` is a
//! comma-separated list of `key=value` pairs; standard keys are `u` (user),
//! `r` (resource), `h` (host), `s` (session id), `t` (type: `stream`, `file`,
//! `auth`) and `m` (mode: `request`, `publish`, `bidirectional`); other keys
//! are allowed and ignored.
//!
//! How ugc reads it for ingest:
//!
//! * the resource `r=<app>/<key>` gives the app and the stream key (`r=<key>`
//!   alone means app `live`); without `r`, the session id `s=` is read the
//!   same way (`s=<key>` or `s=<app>/<key>`);
//! * a missing `m` is taken as `publish` (ugc's SRT port only ingests; the
//!   spec's default `request` would refuse every caller that omits it);
//! * anything else than `t=stream` and `m=publish` is refused with a reason the
//!   caller can see ([`StreamIdError::reject_code`]).
//!
//! ```
//! use ugc_proto::srt::streamid::{Mode, StreamId};
//!
//! let sid = StreamId::parse("#!::r=live/abc123,m=publish,u=alice").unwrap();
//! assert_eq!((sid.app.as_str(), sid.key.as_str()), ("live", "abc123"));
//! assert_eq!(sid.mode, Mode::Publish);
//! assert_eq!(sid.user.as_deref(), Some("alice"));
//! let bare = StreamId::parse("abc123").unwrap();
//! assert_eq!((bare.app.as_str(), bare.key.as_str()), ("live", "abc123"));
//! assert!(StreamId::parse("#!::m=publish").is_err()); // no resource
//! ```

use std::fmt;

/// The app a key belongs to when the stream id names none.
pub const DEFAULT_APP: &str = ugc_core::DEFAULT_APP;
/// Longest stream id SRT carries (bytes).
pub const MAX_LEN: usize = 512;

/// The `m=` mode of a stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The caller wants to receive (play).
    Request,
    /// The caller sends (publish).
    Publish,
    /// Both ways.
    Bidirectional,
}

/// A parsed stream id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamId {
    /// The application (`live`).
    pub app: String,
    /// The stream key.
    pub key: String,
    /// The mode asked for.
    pub mode: Mode,
    /// `u=`: user name, if given.
    pub user: Option<String>,
    /// `s=`: session id, if given.
    pub session: Option<String>,
    /// `h=`: host name, if given.
    pub host: Option<String>,
}

/// Why a stream id is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamIdError {
    /// Empty stream id (the caller sent none).
    Missing,
    /// Longer than [`MAX_LEN`] or with bytes outside printable ASCII.
    Malformed(String),
    /// No resource (`r=`) nor session (`s=`) to take a key from.
    NoResource,
    /// `m=` other than `publish`.
    BadMode(String),
    /// `t=` other than `stream`.
    BadType(String),
}

impl fmt::Display for StreamIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamIdError::Missing => f.write_str("no stream id"),
            StreamIdError::Malformed(r) => write!(f, "malformed stream id: {r}"),
            StreamIdError::NoResource => f.write_str("stream id names no resource (r=)"),
            StreamIdError::BadMode(m) => write!(f, "mode {m:?} not served (publish only)"),
            StreamIdError::BadType(t) => write!(f, "type {t:?} not served (stream only)"),
        }
    }
}

impl std::error::Error for StreamIdError {}

impl StreamIdError {
    /// The SRT rejection code (access-control "server" range, 2000 + HTTP
    /// status) to answer the caller with: 2400 bad request, 2405 bad mode.
    pub fn reject_code(&self) -> u16 {
        match self {
            StreamIdError::BadMode(_) => 2405,
            StreamIdError::BadType(_) => 2415,
            _ => 2400,
        }
    }
}

fn escape(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    cut.escape_default().to_string()
}

impl StreamId {
    /// Parses a stream id.
    pub fn parse(sid: &str) -> Result<StreamId, StreamIdError> {
        if sid.is_empty() {
            return Err(StreamIdError::Missing);
        }
        if sid.len() > MAX_LEN {
            return Err(StreamIdError::Malformed(format!(
                "{} bytes (max {MAX_LEN})",
                sid.len()
            )));
        }
        if let Some(c) = sid.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
            return Err(StreamIdError::Malformed(format!(
                "character {:?}",
                c.escape_default().to_string()
            )));
        }
        match sid.strip_prefix("#!::") {
            Some(list) => Self::parse_list(list),
            None => {
                let (app, key) = split_resource(sid)?;
                Ok(StreamId {
                    app,
                    key,
                    mode: Mode::Publish,
                    user: None,
                    session: None,
                    host: None,
                })
            }
        }
    }

    fn parse_list(list: &str) -> Result<StreamId, StreamIdError> {
        let mut resource = None;
        let mut mode = None;
        let mut user = None;
        let mut session = None;
        let mut host = None;
        let mut kind = None;
        for item in list.split(',') {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                StreamIdError::Malformed(format!("entry {:?} has no '='", escape(item)))
            })?;
            let slot = match k {
                "r" => &mut resource,
                "m" => &mut mode,
                "u" => &mut user,
                "s" => &mut session,
                "h" => &mut host,
                "t" => &mut kind,
                // Custom keys are allowed by the spec; ugc ignores them.
                _ => continue,
            };
            if slot.is_some() {
                return Err(StreamIdError::Malformed(format!("key {k:?} repeated")));
            }
            if v.is_empty() {
                return Err(StreamIdError::Malformed(format!("key {k:?} has no value")));
            }
            *slot = Some(v.to_owned());
        }
        let mode = match mode.as_deref() {
            None | Some("publish") => Mode::Publish,
            Some("request") => Mode::Request,
            Some("bidirectional") => Mode::Bidirectional,
            Some(other) => return Err(StreamIdError::BadMode(escape(other))),
        };
        if mode != Mode::Publish {
            return Err(StreamIdError::BadMode(
                match mode {
                    Mode::Request => "request",
                    _ => "bidirectional",
                }
                .into(),
            ));
        }
        if let Some(t) = kind.as_deref()
            && t != "stream"
        {
            return Err(StreamIdError::BadType(escape(t)));
        }
        let (app, key) = match (&resource, &session) {
            (Some(r), _) => split_resource(r)?,
            (None, Some(s)) => split_resource(s)?,
            (None, None) => return Err(StreamIdError::NoResource),
        };
        Ok(StreamId {
            app,
            key,
            mode,
            user,
            session,
            host,
        })
    }
}

/// `<app>/<key>` or `<key>`.
fn split_resource(r: &str) -> Result<(String, String), StreamIdError> {
    let (app, key) = match r.split_once('/') {
        Some((a, k)) => (a, k),
        None => (DEFAULT_APP, r),
    };
    if app.is_empty() || key.is_empty() || key.contains('/') {
        return Err(StreamIdError::Malformed(format!(
            "resource {:?} is not <app>/<key>",
            escape(r)
        )));
    }
    Ok((app.to_owned(), key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ffmpeg_and_obs_forms() {
        for (sid, app, key) in [
            ("#!::r=live/k1,m=publish", "live", "k1"),
            ("#!::m=publish,r=live/k1", "live", "k1"),
            ("#!::r=k1", "live", "k1"),
            ("#!::u=bob,s=k1,m=publish", "live", "k1"),
            ("#!::s=live/k1", "live", "k1"),
            ("#!::r=other/k1,x-custom=7", "other", "k1"),
            ("k1", "live", "k1"),
            ("live/k1", "live", "k1"),
        ] {
            let s = StreamId::parse(sid).unwrap_or_else(|e| panic!("{sid}: {e}"));
            assert_eq!((s.app.as_str(), s.key.as_str()), (app, key), "{sid}");
        }
    }

    #[test]
    fn refusals_carry_the_right_code() {
        let code = |s: &str| StreamId::parse(s).unwrap_err().reject_code();
        assert_eq!(code("#!::r=live/k,m=request"), 2405);
        assert_eq!(code("#!::r=live/k,m=bidirectional"), 2405);
        assert_eq!(code("#!::r=live/k,m=sideways"), 2405);
        assert_eq!(code("#!::r=live/k,t=file"), 2415);
        assert_eq!(code("#!::m=publish"), 2400);
        assert_eq!(code("#!::r=live/k,r=live/j"), 2400);
        assert_eq!(code("#!::r"), 2400);
        assert_eq!(code("#!::r="), 2400);
        assert_eq!(code("live/a/b"), 2400);
        // Fuzz-found: a session id with more than one '/' is no key.
        assert_eq!(code("#!::s=live/abc123#!:=li/x"), 2400);
        assert_eq!(code("/k"), 2400);
        assert_eq!(code("k\n"), 2400);
        assert_eq!(code(""), 2400);
        assert_eq!(code(&"k".repeat(513)), 2400);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_keys_have_no_separators(s in "\\PC{0,80}") {
            if let Ok(sid) = StreamId::parse(&s) {
                prop_assert!(!sid.key.is_empty() && !sid.key.contains('/'));
                prop_assert!(!sid.app.is_empty());
                prop_assert_eq!(sid.mode, Mode::Publish);
            }
        }
    }
}
