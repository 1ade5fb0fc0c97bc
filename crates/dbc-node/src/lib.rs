//! # dbc-node — the napi-rs binding of dbc-core
//!
//! Thin by design: it converts JS values to core types on the JS thread, runs the core's
//! async operations on napi's tokio runtime, and converts results back. One file per
//! exported class — [`connector`] (`Connector`, with `open` and `testConnection`) and
//! [`query_stream`] (`QueryStream`) — plus the module-level functions here
//! (`operations`, `batchOperations`, `queueOperations`, `version`). [`error`] is the one place a core
//! error becomes a JS error, and where a panic becomes a `DBC_INTERNAL` rejection;
//! [`convert`] holds the value conversions.
#![deny(clippy::all)]

/// Returns early with a napi error when a raw napi call did not succeed.
macro_rules! check {
    ($e:expr) => {{
        let status = $e;
        if status != sys::Status::napi_ok {
            return Err(Error::new(
                Status::from(status),
                "napi call failed".to_string(),
            ));
        }
    }};
}

pub mod connector;
pub mod convert;
pub mod error;
pub mod query_stream;

use dbc_core::Op;
use napi_derive::napi;

/// A panic is reported as one line on stderr (then as `DBC_INTERNAL` to the caller)
/// instead of the default multi-page backtrace in the Node-RED log.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // warnings and errors of the core (reaper, migrations) go to stderr, which Node-RED
        // shows in its log; DBC_LOG=info|debug shows more
        let level = match std::env::var("DBC_LOG").as_deref() {
            Ok("debug") => tracing::Level::DEBUG,
            Ok("info") => tracing::Level::INFO,
            _ => tracing::Level::WARN,
        };
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_target(false)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("[database-connector] internal error (panic){at}: {what}");
        }));
    });
}

/// The names of the operations `execute` runs (`query` first): the one list of them,
/// which the JS side reads from here.
#[napi]
pub fn operations() -> Vec<String> {
    Op::ALL.iter().map(|o| o.as_str().to_string()).collect()
}

/// The names of the operations a single call of which may join `executeMany` (when
/// debug is off): the one batching rule, read by the JS side from here.
#[napi]
pub fn batch_operations() -> Vec<String> {
    Op::ALL
        .iter()
        .filter(|o| o.joins_batch(false))
        .map(|o| o.as_str().to_string())
        .collect()
}

/// The names of the operations for which the node's queue is the default queue (the
/// editor shows its Queue field for these), read by the JS side from here.
#[napi]
pub fn queue_operations() -> Vec<String> {
    Op::ALL
        .iter()
        .filter(|o| o.uses_default_queue())
        .map(|o| o.as_str().to_string())
        .collect()
}

/// The version of the addon (the crate version).
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
