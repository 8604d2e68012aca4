//! The error type of `ugc-auth`.

/// Errors of the control plane, classified by who is to blame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller (API client, config) sent a value that is not allowed: a bad
    /// stream name, a field out of range. Maps to HTTP 400.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field or argument.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// No such stream, creator or session. Maps to HTTP 404.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// What kind of object.
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// The caller may not touch this object (another creator's stream, or
    /// an admin-only route). Maps to HTTP 403.
    #[error("{0}")]
    Forbidden(String),
    /// The object exists already. Maps to HTTP 409.
    #[error("{what} {id:?} already exists")]
    Conflict {
        /// What kind of object.
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// A play token could not be verified.
    #[error("play token rejected: {0}")]
    Token(#[from] crate::token::TokenError),
    /// The configuration is unusable (e.g. an `https://` auth backend URL,
    /// which needs a TLS stack this crate does not carry).
    #[error("configuration: {0}")]
    Config(String),
    /// The database failed (connection, query, constraint).
    #[error("database ({context}): {source}")]
    Database {
        /// What we were doing.
        context: &'static str,
        /// The driver error.
        source: sqlx::Error,
    },
    /// Running the schema migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Reading or writing a file in the data directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OS random number generator failed.
    #[error("random number generator: {0}")]
    Random(String),
    /// Talking to a remote control plane failed (connection, HTTP status,
    /// a malformed snapshot or event).
    #[error("control plane {url}: {reason}")]
    Remote {
        /// The control plane URL.
        url: String,
        /// The HTTP status, when the failure is one.
        status: Option<u16>,
        /// What went wrong.
        reason: String,
    },
    /// A row in the database does not decode (an internal bug or a database
    /// edited by hand).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Database { context, source }
}
