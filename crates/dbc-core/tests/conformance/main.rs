//! Conformance suite: the same test bodies run against PostgreSQL, MariaDB and SQLite.
//!
//! Every test body is an `async fn(Provider)` in the module of its area (below); the
//! `conformance!` macro at the end instantiates each of them once per provider
//! (`postgres::*`, `mariadb::*`, `sqlite::*`). A new test body goes in its area's module
//! and its name in the list at the end.
//!
//! Databases: PostgreSQL from `DBC_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), MariaDB from `DBC_TEST_MARIADB_URL`
//! (default `mysql://root@127.0.0.1:3306/test`), SQLite in a temporary file per test.
//! An unreachable database fails the test with a message naming the variable to set;
//! nothing is skipped.
//!
//! Every test works under its own random table prefix (`t<hex>_`), so the tests run in
//! parallel, and drops its tables at the end (best effort, also when the body panics).

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod attempts;
mod dead_letter;
mod debug;
mod endings;
mod errors;
mod lease;
mod migrations;
mod params;
mod queues;
mod retention;
mod schedules;
mod settle;
mod streaming;
mod tasks;
mod types;
mod unique;

use std::time::{Duration, Instant};

use common::*;
use dbc_core::connector::{test_connection, DebugInfo, OpOptions};
use dbc_core::value::{Param, Params, Value};
use dbc_core::{Connector, ConnectorConfig, Provider};
use serde_json::{json, Value as Json};

use attempts::*;
use dead_letter::*;
use debug::*;
use endings::*;
use errors::*;
use lease::*;
use migrations::*;
use params::*;
use queues::*;
use retention::*;
use schedules::*;
use settle::*;
use streaming::*;
use tasks::*;
use types::*;
use unique::*;

fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("a valid time")
        .with_timezone(&chrono::Utc)
}

conformance!(
    types_round_trip,
    types_null_into_int_and_int_into_text,
    errors_connection_refused,
    errors_bad_credentials,
    errors_syntax,
    errors_unique_violation,
    errors_param_count,
    errors_invalid_json_param,
    errors_unknown_operation,
    errors_bad_config,
    params_positional,
    params_named,
    migrations_auto_and_status,
    migrations_manual,
    migrations_race,
    tasks_insert_single_and_array,
    tasks_idempotency,
    tasks_idempotency_concurrent,
    tasks_lifecycle_history,
    tasks_invalid_transition_and_not_found,
    tasks_fail_and_retry,
    tasks_lease_lost,
    tasks_lease_expired_not_yet_reaped,
    tasks_node_queue_default,
    tasks_attempt_history_written_once,
    tasks_lease_expiry_history,
    endings_lease_expiry_on_last_attempt,
    endings_lease_expiry_with_attempts_left,
    migrations_running_attempt_survives_upgrade,
    tasks_validation_writes_nothing,
    retention_purges_old_finished_tasks,
    debug_info,
    test_connection_and_close,
    stream_chunks,
    stream_errors,
    stream_dropped_early_releases_connection,
    queues_pause_stops_claims_until_resumed,
    queues_node_queue_and_validation,
    queues_stats_count_exactly,
    settle_batch_of_1000,
    settle_batch_validation_changes_nothing,
    lease_heartbeat_keeps_a_long_task,
    lease_heartbeat_only_by_the_holder,
    lease_progress_is_shown,
    lease_snooze_keeps_the_attempt,
    lease_cancelled_running_task_is_told,
    unique_while_active,
    unique_for_a_period,
    unique_concurrent_inserts_take_a_freed_key_once,
    unique_validation_writes_nothing,
    dead_letter_on_reported_failure,
    dead_letter_on_lease_expiry,
    dead_letter_never_loops,
    dead_letter_configure_validation,
    settle_batch_completions_set_based,
    settle_batch_mixed_outcomes,
    settle_batch_set_path_checks_lease,
    schedules_create_list_pause_delete,
    schedules_validation_changes_nothing,
    schedules_fire_once_per_tick_across_runtimes,
    schedules_missed_ticks_fire_the_latest_once,
);
