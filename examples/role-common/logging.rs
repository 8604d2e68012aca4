//! Logging of the role binaries: `UGC_LOG` (an `EnvFilter`, default
//! `info`) to standard error. Included with `#[path]`; wiring only.

/// Starts the process's logger.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UGC_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
