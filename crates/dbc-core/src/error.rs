//! The one error type of the connector.
//!
//! Every failure that leaves the core is a [`DbcError`]; its [`DbcError::code`] is the
//! stable `DBC_*` code (docs/ERRORS.md) and [`DbcError::is_retryable`] says whether running the
//! same operation again may succeed. Driver errors are classified once, in
//! [`DbcError::from_sqlx`] (in `db`, beside the drivers), and never travel further as
//! driver variants.

use std::fmt;

/// Which database an error came from (or was meant for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// PostgreSQL 13+
    Postgres,
    /// MariaDB 10.6+ (tested with 10.11; MySQL speaks the same protocol but is never tested)
    Mariadb,
    /// SQLite (bundled)
    Sqlite,
}

impl Provider {
    /// The name used in configs, errors and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Postgres => "postgres",
            Provider::Mariadb => "mariadb",
            Provider::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every way an operation can fail. The variant decides `code()`; see docs/ERRORS.md.
/// `Clone` so that one failure of a coalesced batch (e.g. no connection) can reach
/// every caller in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbcError {
    /// The configuration is unusable (unknown provider, bad prefix, bad port...).
    #[error("{0}")]
    Config(String),
    /// The operation's input is invalid; `field` names the offending input.
    #[error("{message}")]
    Validation {
        /// dotted path of the bad input, e.g. `payload.priority`
        field: String,
        /// what is wrong, in plain words
        message: String,
    },
    /// The database could not be reached, or the connection broke.
    #[error("{message}")]
    Connection {
        /// what happened, without credentials
        message: String,
        /// true when the request may have been applied (the connection broke after sending)
        outcome_unknown: bool,
    },
    /// The database refused the credentials (code `DBC_CONNECTION`, not retryable: the
    /// same credentials will be refused again).
    #[error("{0}")]
    AccessDenied(String),
    /// No pooled connection became free within the acquire timeout.
    #[error("{0}")]
    PoolTimeout(String),
    /// The statement ran longer than the statement timeout.
    #[error("{0}")]
    QueryTimeout(String),
    /// The task or workflow does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A constraint (unique, foreign key, check) refused the change.
    #[error("{message}")]
    Conflict {
        /// what the database said
        message: String,
        /// the SQLSTATE, where the database gives one
        sql_state: Option<String>,
    },
    /// The task's current status does not allow the requested change.
    #[error("{0}")]
    InvalidTransition(String),
    /// The caller's lease on the task expired or belongs to another worker.
    #[error("{0}")]
    LeaseLost(String),
    /// The task was cancelled while its worker held it: the worker's heartbeat or snooze
    /// learns it as `DBC_LEASE_LOST`, its settle as `DBC_INVALID_TRANSITION`, both with
    /// `reason: "cancelled"` ([`DbcError::reason`]; docs/ERRORS.md). No new code: a
    /// flow that knows the two codes already handles it.
    #[error("{message}")]
    Cancelled {
        /// what happened, in plain words
        message: String,
        /// true for a settle (`updateTaskStatus`): code `DBC_INVALID_TRANSITION`
        settle: bool,
    },
    /// A step of `executeTransaction` failed; everything was rolled back.
    #[error("step {index} failed: {source}")]
    Transaction {
        /// zero-based index of the failing step
        index: usize,
        /// why it failed
        source: Box<DbcError>,
    },
    /// The database rejected the SQL (syntax, unknown column, bad cast...).
    #[error("{message}")]
    Query {
        /// what the database said
        message: String,
        /// the SQLSTATE, where the database gives one
        sql_state: Option<String>,
    },
    /// The connector's schema is missing, newer than this version, or a migration failed.
    #[error("{0}")]
    Schema(String),
    /// A bug in the connector (including a caught panic).
    #[error("{0}")]
    Internal(String),
}

impl DbcError {
    /// Shorthand for a validation error.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        DbcError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The stable `DBC_*` code (docs/ERRORS.md); never renamed.
    pub fn code(&self) -> &'static str {
        match self {
            DbcError::Config(_) => "DBC_CONFIG",
            DbcError::Validation { .. } => "DBC_VALIDATION",
            DbcError::Connection { .. } | DbcError::AccessDenied(_) => "DBC_CONNECTION",
            DbcError::PoolTimeout(_) => "DBC_POOL_TIMEOUT",
            DbcError::QueryTimeout(_) => "DBC_QUERY_TIMEOUT",
            DbcError::NotFound(_) => "DBC_NOT_FOUND",
            DbcError::Conflict { .. } => "DBC_CONFLICT",
            DbcError::InvalidTransition(_) => "DBC_INVALID_TRANSITION",
            DbcError::LeaseLost(_) | DbcError::Cancelled { settle: false, .. } => "DBC_LEASE_LOST",
            DbcError::Cancelled { settle: true, .. } => "DBC_INVALID_TRANSITION",
            DbcError::Transaction { .. } => "DBC_TRANSACTION",
            DbcError::Query { .. } => "DBC_QUERY",
            DbcError::Schema(_) => "DBC_SCHEMA",
            DbcError::Internal(_) => "DBC_INTERNAL",
        }
    }

    /// Whether the same operation may succeed if run again unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            DbcError::Connection { .. } | DbcError::PoolTimeout(_) | DbcError::QueryTimeout(_) => {
                true
            }
            DbcError::Query { sql_state, .. } => {
                sql_state.as_deref().is_some_and(is_retryable_state)
            }
            DbcError::Transaction { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The SQLSTATE behind the error, if any (for a transaction: its failing step's).
    pub fn sql_state(&self) -> Option<&str> {
        match self {
            DbcError::Query { sql_state, .. } | DbcError::Conflict { sql_state, .. } => {
                sql_state.as_deref()
            }
            DbcError::Transaction { source, .. } => source.sql_state(),
            _ => None,
        }
    }

    /// Why a task change was refused, where the code alone does not say it: `cancelled`
    /// when the task was cancelled while its worker held it (the `reason` of the JS
    /// error).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            DbcError::Cancelled { .. } => Some("cancelled"),
            DbcError::Transaction { source, .. } => source.reason(),
            _ => None,
        }
    }

    /// True when a broken connection leaves it unknown whether the request was applied.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            DbcError::Connection {
                outcome_unknown, ..
            } => *outcome_unknown,
            DbcError::Transaction { source, .. } => source.outcome_unknown(),
            _ => false,
        }
    }

    /// True for errors that say the database itself is unreachable (drives failover).
    pub fn is_connection_class(&self) -> bool {
        matches!(
            self,
            DbcError::Connection { .. } | DbcError::PoolTimeout(_) | DbcError::AccessDenied(_)
        )
    }
}

/// SQLSTATEs that mean "try again": serialization failure, deadlock (PostgreSQL and
/// MariaDB), lock wait timeout.
pub fn is_retryable_state(state: &str) -> bool {
    matches!(state, "40001" | "40P01" | "55P03")
}

/// Result alias used throughout the core.
pub type Result<T, E = DbcError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_retryable_classes_hold() {
        assert_eq!(DbcError::validation("id", "bad").code(), "DBC_VALIDATION");
        assert!(DbcError::PoolTimeout("x".into()).is_retryable());
        let deadlock = DbcError::Query {
            message: "deadlock".into(),
            sql_state: Some("40P01".into()),
        };
        assert!(deadlock.is_retryable());
        let syntax = DbcError::Query {
            message: "syntax".into(),
            sql_state: Some("42601".into()),
        };
        assert!(!syntax.is_retryable());
        let tx = DbcError::Transaction {
            index: 2,
            source: Box::new(deadlock),
        };
        assert_eq!(tx.code(), "DBC_TRANSACTION");
        assert!(tx.is_retryable());
        assert_eq!(tx.sql_state(), Some("40P01"));
        let hb = DbcError::Cancelled {
            message: "x".into(),
            settle: false,
        };
        assert_eq!(
            (hb.code(), hb.reason()),
            ("DBC_LEASE_LOST", Some("cancelled"))
        );
        let settle = DbcError::Cancelled {
            message: "x".into(),
            settle: true,
        };
        assert_eq!(settle.code(), "DBC_INVALID_TRANSITION");
        assert_eq!(DbcError::LeaseLost("x".into()).reason(), None);
        assert!(Provider::parse("oracle").is_err());
        assert_eq!(Provider::parse("mysql").unwrap(), Provider::Mariadb);
    }
}
