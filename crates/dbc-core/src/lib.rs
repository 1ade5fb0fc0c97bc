//! # dbc-core — the database side of node-red-contrib-database-connector
//!
//! A plain Rust library (no napi) that owns everything a flow's database work needs:
//! one typed sqlx pool per provider ([`db`]), the same value mapping on PostgreSQL,
//! MariaDB and SQLite ([`value`]), the connector's own schema and its embedded,
//! lock-protected migrations ([`migrate`]), the task queue and workflow store
//! ([`tasks`]), the routing between a primary and a fallback database ([`route`]), the
//! operations by name ([`op`]), metrics ([`metrics`]) and the coded errors every caller
//! sees ([`error`]).
//!
//! The entry point is [`Connector`]: built from a [`ConnectorConfig`], it probes and
//! opens its pools, applies migrations, and runs operations. Every operation is `async`
//! on tokio; nothing blocks the caller's thread. The napi binding crate wraps it.
#![deny(clippy::all)]

pub mod coalesce;
pub mod config;
pub mod connector;
pub mod db;
pub mod error;
pub mod metrics;
pub mod migrate;
pub mod op;
pub mod route;
pub mod state;
pub mod tasks;
pub mod value;
pub mod wake;
pub mod workflows;

/// SQL text per dialect, now under [`db`].
pub use db::sqltext;
/// The router's former path, kept for the queue modules' imports.
pub use route as failover;

pub use config::{ConnectionConfig, ConnectorConfig, PoolConfig};
pub use connector::Connector;
pub use error::{DbcError, Provider, Result};
pub use op::Op;
pub use state::ConnState;
