//! A panic hook for targets whose code under test contains panics of a
//! dependency with `catch_unwind` (srt-protocol inside the SRT listener and
//! caller): libfuzzer-sys's own hook aborts on every panic, caught or not.
//! This one prints each location of a dependency's panic once and every
//! panic of our own code (assertions of the target, anything in ugc); a
//! panic that escapes still aborts (libfuzzer-sys catches it around the
//! target and aborts).
//!
//! Include with `#[path = "../common/contained_panics.rs"] mod contained_panics;`
//! and call `contained_panics::install()` first thing in the target.

use std::collections::HashSet;
use std::sync::{Mutex, Once, OnceLock};

pub fn install() {
    static ONCE: Once = Once::new();
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let contained = at.contains("/.cargo/registry/");
            let seen = SEEN.get_or_init(Default::default);
            let first = seen.lock().map(|mut s| s.insert(at.clone())).unwrap_or(true);
            if !contained || first {
                eprintln!("panic at {at}: {info}");
            }
        }));
    });
}
