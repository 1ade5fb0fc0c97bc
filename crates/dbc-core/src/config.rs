//! Connector configuration, as the config node hands it over (camelCase JSON).
//!
//! Validation happens here, once, before any connection is attempted, so a bad config
//! is a `DBC_CONFIG` error with a plain message and never a half-open pool.

use std::time::Duration;

use serde::Deserialize;

use crate::{DbcError, Provider, Result};

/// How to reach one database.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectionConfig {
    /// `postgres`, `mariadb` or `sqlite`
    pub provider: String,
    /// a full connection URL; when set it wins over host/port/database/user/password
    pub url: Option<String>,
    /// host name or address
    pub host: Option<String>,
    /// TCP port (default 5432 / 3306)
    pub port: Option<u32>,
    /// database name
    pub database: Option<String>,
    /// user name
    pub user: Option<String>,
    /// password (a credential: never logged)
    pub password: Option<String>,
    /// `disable | prefer | require | verify-full`
    pub ssl: Option<String>,
    /// CA certificate: a file path, or PEM text
    pub ssl_ca: Option<String>,
    /// client certificate: a file path, or PEM text
    pub ssl_cert: Option<String>,
    /// client key: a file path, or PEM text
    pub ssl_key: Option<String>,
    /// SQLite file (absolute, already resolved against the Node-RED user dir), or `:memory:`
    pub sqlite_file: Option<String>,
}

/// Pool limits and timeouts (defaults: docs/USER-GUIDE.md, "Pool and timeouts").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PoolConfig {
    /// most connections open at once
    pub pool_max: u32,
    /// connections kept open while idle
    pub pool_min: u32,
    /// how long an operation waits for a free connection
    pub acquire_timeout_ms: u64,
    /// how long an idle connection is kept
    pub idle_timeout_ms: u64,
    /// longest a statement may run
    pub statement_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            pool_max: 10,
            pool_min: 0,
            acquire_timeout_ms: 5_000,
            idle_timeout_ms: 60_000,
            statement_timeout_ms: 30_000,
        }
    }
}

impl PoolConfig {
    /// The acquire timeout as a `Duration`.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

/// Everything one config node describes.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectorConfig {
    /// the primary database
    pub primary: ConnectionConfig,
    /// the optional fallback database
    pub fallback: Option<ConnectionConfig>,
    /// pool settings, shared by primary and fallback
    pub pool: PoolConfig,
    /// health check interval
    pub health_interval_ms: u64,
    /// failed health checks before failover
    pub failover_threshold: u32,
    /// `auto` or `manual`
    pub failback: String,
    /// prefix of every table the connector owns
    pub table_prefix: String,
    /// apply pending migrations when the pools open
    pub auto_migrate: bool,
    /// largest accepted task payload, in bytes of JSON
    pub max_payload_bytes: usize,
    /// backoff after a task's first failed attempt (doubles each attempt)
    pub retry_backoff_ms: u64,
    /// longest backoff between attempts
    pub retry_backoff_max_ms: u64,
    /// days a completed or cancelled task is kept (0: forever)
    pub retention_days: u32,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            primary: ConnectionConfig {
                provider: "sqlite".into(),
                ..Default::default()
            },
            fallback: None,
            pool: PoolConfig::default(),
            health_interval_ms: 2_000,
            failover_threshold: 3,
            failback: "auto".into(),
            table_prefix: "dbc_".into(),
            auto_migrate: true,
            max_payload_bytes: 1024 * 1024,
            retry_backoff_ms: 1_000,
            retry_backoff_max_ms: 3_600_000,
            retention_days: 7,
        }
    }
}

/// The table prefix rule (docs/USER-GUIDE.md, "Schema"): `^[a-z][a-z0-9_]{0,30}$`.
pub fn valid_prefix(p: &str) -> bool {
    let b = p.as_bytes();
    !b.is_empty()
        && b.len() <= 31
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

impl ConnectorConfig {
    /// Parses and validates a config given as JSON text.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: ConnectorConfig = serde_json::from_str(text)
            .map_err(|e| DbcError::Config(format!("invalid configuration: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field the docs constrain (docs/USER-GUIDE.md, docs/API.md).
    pub fn validate(&self) -> Result<()> {
        if !valid_prefix(&self.table_prefix) {
            return Err(DbcError::Config(format!(
                "table prefix {:?} must match ^[a-z][a-z0-9_]{{0,30}}$",
                self.table_prefix
            )));
        }
        self.primary.validate("primary")?;
        if let Some(f) = &self.fallback {
            f.validate("fallback")?;
        }
        let p = &self.pool;
        if p.pool_max == 0 || p.pool_max > 1000 {
            return Err(DbcError::Config(
                "poolMax must be between 1 and 1000".into(),
            ));
        }
        if p.pool_min > p.pool_max {
            return Err(DbcError::Config("poolMin must not exceed poolMax".into()));
        }
        if p.acquire_timeout_ms == 0 || p.statement_timeout_ms == 0 {
            return Err(DbcError::Config(
                "acquireTimeoutMs and statementTimeoutMs must be positive".into(),
            ));
        }
        if self.health_interval_ms < 100 {
            return Err(DbcError::Config(
                "healthIntervalMs must be at least 100".into(),
            ));
        }
        if self.failover_threshold == 0 {
            return Err(DbcError::Config(
                "failoverThreshold must be at least 1".into(),
            ));
        }
        const YEAR_MS: u64 = 365 * 86_400_000;
        if self.retry_backoff_ms == 0
            || self.retry_backoff_ms > YEAR_MS
            || self.retry_backoff_max_ms > YEAR_MS
        {
            return Err(DbcError::Config(
                "retryBackoffMs must be 1 ms to 1 year, and retryBackoffMaxMs at most 1 year"
                    .into(),
            ));
        }
        if self.retention_days > 36_500 {
            return Err(DbcError::Config(
                "retentionDays must be at most 36500 (0 keeps tasks forever)".into(),
            ));
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > 1 << 30 {
            return Err(DbcError::Config(
                "maxPayloadBytes must be 1 byte to 1 GiB".into(),
            ));
        }
        if self.failback != "auto" && self.failback != "manual" {
            return Err(DbcError::Config("failback must be auto or manual".into()));
        }
        Ok(())
    }
}

impl Provider {
    /// Parses a provider name as written in a config node.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "postgresql" | "postgres" => Ok(Provider::Postgres),
            "mariadb" | "mysql" => Ok(Provider::Mariadb),
            "sqlite" => Ok(Provider::Sqlite),
            other => Err(DbcError::Config(format!(
                "unknown provider {other:?}: use postgres, mariadb or sqlite"
            ))),
        }
    }
}

impl ConnectionConfig {
    /// The provider, parsed.
    pub fn provider(&self) -> Result<Provider> {
        Provider::parse(&self.provider)
    }

    fn validate(&self, which: &str) -> Result<()> {
        let provider = self.provider()?;
        if let Some(port) = self.port {
            if port == 0 || port > 65535 {
                return Err(DbcError::Config(format!(
                    "{which} port {port} is out of range 1..65535"
                )));
            }
        }
        if let Some(ssl) = &self.ssl {
            if !matches!(
                ssl.as_str(),
                "" | "disable" | "prefer" | "require" | "verify-full"
            ) {
                return Err(DbcError::Config(format!(
                    "{which} ssl mode {ssl:?} must be disable, prefer, require or verify-full"
                )));
            }
        }
        if provider.is_embedded() && self.sqlite_file.as_deref().unwrap_or("").is_empty() {
            return Err(DbcError::Config(format!("{which} sqlite file is missing")));
        }
        Ok(())
    }

    /// Where this connection goes, for logs: never includes a password.
    pub fn describe(&self) -> String {
        match self.provider() {
            Ok(p) if p.is_embedded() => {
                format!("{p}:{}", self.sqlite_file.as_deref().unwrap_or(""))
            }
            Ok(p) => {
                if let Some(url) = &self.url {
                    format!("{p}:{}", redact_url(url))
                } else {
                    format!(
                        "{p}://{}:{}/{}",
                        self.host.as_deref().unwrap_or("127.0.0.1"),
                        self.port.unwrap_or(p.default_port().unwrap_or_default()),
                        self.database.as_deref().unwrap_or("")
                    )
                }
            }
            Err(_) => "unknown".into(),
        }
    }
}

/// Removes the user-info part (`user:password@`) of a URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rule() {
        assert!(valid_prefix("dbc_"));
        assert!(valid_prefix("a"));
        assert!(!valid_prefix("Dbc"));
        assert!(!valid_prefix("1abc"));
        assert!(!valid_prefix("x; drop table"));
        assert!(!valid_prefix(&"a".repeat(32)));
    }

    #[test]
    fn bad_configs_are_config_errors() {
        let bad = [
            r#"{"primary":{"provider":"oracle"}}"#,
            r#"{"primary":{"provider":"postgres","port":70000}}"#,
            r#"{"primary":{"provider":"sqlite","sqliteFile":"x.db"},"tablePrefix":"X"}"#,
            r#"{"primary":{"provider":"sqlite"}}"#,
            r#"{"primary":{"provider":"postgres","ssl":"maybe"}}"#,
            r#"{"primary":{"provider":"sqlite","sqliteFile":"x"},"pool":{"poolMax":0}}"#,
            r#"{"primary":{"provider":"sqlite","sqliteFile":"x"},"retentionDays":4000000000}"#,
            r#"{"primary":{"provider":"sqlite","sqliteFile":"x"},"retryBackoffMs":0}"#,
            "not json",
        ];
        for text in bad {
            let err = ConnectorConfig::from_json(text).unwrap_err();
            assert_eq!(err.code(), "DBC_CONFIG", "{text}");
        }
        let ok = ConnectorConfig::from_json(
            r#"{"primary":{"provider":"sqlite","sqliteFile":":memory:"}}"#,
        )
        .unwrap();
        assert_eq!(ok.pool.pool_max, 10);
        assert_eq!(ok.table_prefix, "dbc_");
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }
}
