//! The origin's LL-HLS request parsing (what any viewer sends): the file
//! name below `/live/<stream>/`, the `_HLS_msn` / `_HLS_part` / `_HLS_skip`
//! directives and the `token` parameter, and the token echo into playlist
//! URIs. Never panics; what parses re-parses from its canonical spelling to
//! the same value; other query parameters never change the directives; a
//! token is exactly what followed `token=`, and an echoed token ends every
//! URI line.
//!
//! Input: `<file name>\n<query>\n<playlist text>` (missing parts are empty).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_dvr::Variant;
use ugc_proto::origin::{
    Directives, LiveFile, parse_directives, parse_live_file, token_is_url_safe, token_param,
    with_token,
};

fn render(d: &Directives) -> String {
    let mut q = Vec::new();
    if let Some(m) = d.msn {
        q.push(format!("_HLS_msn={m}"));
    }
    if let Some(p) = d.part {
        q.push(format!("_HLS_part={p}"));
    }
    if d.skip {
        q.push("_HLS_skip=YES".to_owned());
    }
    q.join("&")
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = s.splitn(3, '\n');
    let file = parts.next().unwrap_or("");
    let query = parts.next().unwrap_or("");
    let playlist = parts.next().unwrap_or("");

    match parse_live_file(file) {
        Ok(LiveFile::Media(m)) => {
            let canonical = m.to_string();
            assert!(canonical.len() <= file.len(), "{canonical} longer than {file}");
            assert_eq!(parse_live_file(&canonical), Ok(LiveFile::Media(m)));
        }
        Ok(LiveFile::Multivariant) => assert_eq!(file, "index.m3u8"),
        Ok(LiveFile::MediaPlaylist(Variant::Fmp4)) => assert_eq!(file, "mono.m3u8"),
        Ok(LiveFile::MediaPlaylist(Variant::Ts)) => assert_eq!(file, "mono-ts.m3u8"),
        Err(_) => {}
    }

    let directives = parse_directives(Some(query));
    if let Ok(d) = directives {
        assert!(d.part.is_none() || d.msn.is_some(), "{query:?} -> {d:?}");
        assert_eq!(parse_directives(Some(&render(&d))), Ok(d), "{query:?}");
    }
    // Parameters other than the three directives are ignored.
    assert_eq!(
        parse_directives(Some(&format!("{query}&token=x&a=b"))),
        directives,
        "{query:?}"
    );

    let token = token_param(Some(query));
    if let Some(t) = &token {
        assert!(!t.contains('&'));
        assert!(query.contains(&format!("token={t}")));
        if token_is_url_safe(t) {
            let out = with_token(playlist, t);
            let uri_lines = playlist
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .count();
            let tagged = out
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .inspect(|l| assert!(l.ends_with(&format!("token={t}")), "{l:?}"))
                .count();
            assert_eq!(tagged, uri_lines);
            // Line for line (empty lines stay empty).
            assert_eq!(out.lines().count(), playlist.lines().count());
        }
    }
    assert_eq!(token_param(None), None);
});
