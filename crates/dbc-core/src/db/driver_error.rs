//! Driver errors classified into [`DbcError`]s, once, where the drivers are: SQLSTATEs
//! and the servers' own messages (PostgreSQL, MariaDB, SQLite) say which class an error
//! is (timeout, access denied, outage, conflict, query error).

use crate::DbcError;

impl DbcError {
    /// Classifies a driver error. `sent` says whether the request may already have
    /// reached the server, which decides `outcome: "unknown"` for broken connections.
    pub fn from_sqlx(err: sqlx::Error, sent: bool) -> Self {
        use sqlx::Error as E;
        match err {
            E::Database(db) => {
                let state = db.code().map(|c| c.into_owned());
                // DatabaseError::message() leaves out sqlx's " at line N" suffix.
                let message = db.message().to_string();
                classify_database_error(message, state, db.kind())
            }
            E::PoolTimedOut => DbcError::PoolTimeout(
                "no database connection became free within the acquire timeout".into(),
            ),
            E::PoolClosed => DbcError::Connection {
                message: "the connection pool is closed".into(),
                outcome_unknown: false,
            },
            E::Io(e) => DbcError::Connection {
                message: format!("network error: {e}"),
                outcome_unknown: sent,
            },
            E::Tls(e) => DbcError::Connection {
                message: format!("TLS error: {e}"),
                outcome_unknown: false,
            },
            E::Protocol(m) => DbcError::Connection {
                message: format!("protocol error: {m}"),
                outcome_unknown: sent,
            },
            E::RowNotFound => DbcError::NotFound("no row found".into()),
            E::ColumnDecode { index, source } => DbcError::Query {
                message: format!("cannot decode column {index}: {source}"),
                sql_state: None,
            },
            E::Decode(e) => DbcError::Query {
                message: format!("cannot decode value: {e}"),
                sql_state: None,
            },
            E::Encode(e) => DbcError::validation("params", format!("cannot encode parameter: {e}")),
            E::Configuration(e) => DbcError::Config(e.to_string()),
            E::Migrate(e) => DbcError::Schema(e.to_string()),
            other => DbcError::Internal(other.to_string()),
        }
    }
}

fn classify_database_error(
    message: String,
    sql_state: Option<String>,
    kind: sqlx::error::ErrorKind,
) -> DbcError {
    use sqlx::error::ErrorKind as K;
    let state = sql_state.as_deref().unwrap_or("");
    // PostgreSQL: 57014 query_canceled (statement_timeout). MariaDB: 70100 / ER 1969 max_statement_time.
    if state == "57014" || state == "70100" || message.contains("max_statement_time") {
        return DbcError::QueryTimeout(format!("statement timed out: {message}"));
    }
    // 28xxx: wrong user or password; 3D000 / ER 1049: no such database. Waiting does not
    // fix these, so they are not treated as an outage.
    if state.starts_with("28")
        || state == "3D000"
        || message.contains("Access denied")
        || message.contains("Unknown database")
    {
        return DbcError::AccessDenied(message);
    }
    // 08xxx connection exceptions, 57P01..03 admin shutdown / cannot connect now.
    if state.starts_with("08") || state.starts_with("57P") {
        return DbcError::Connection {
            message,
            outcome_unknown: false,
        };
    }
    match kind {
        K::UniqueViolation | K::ForeignKeyViolation | K::NotNullViolation | K::CheckViolation => {
            DbcError::Conflict { message, sql_state }
        }
        _ => DbcError::Query { message, sql_state },
    }
}
