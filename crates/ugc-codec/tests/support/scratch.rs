//! Scratch files of a test process: `<temp dir>/<prefix>-<pid>/<name>`.
//! A test process has no teardown hook to remove its directory, so the
//! first call removes those that processes with the same prefix left
//! behind and that no longer run (Linux: no `/proc/<pid>`).

use std::path::{Path, PathBuf};
use std::sync::Once;

/// The path of scratch file `name` of this process (its directory exists).
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    static SWEPT: Once = Once::new();
    let root = std::env::temp_dir();
    SWEPT.call_once(|| sweep(&root, prefix));
    let dir = root.join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn sweep(root: &Path, prefix: &str) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
