//! Background upkeep on the database in use, beside the router's own health loop:
//! expired leases go back to `pending`, due schedules enqueue their tasks
//! (`queue::schedules::fire_due`, once per tick across runtimes), and finished tasks past
//! their retention are deleted.

use std::sync::Arc;

use crate::queue::wake::Waker;
use crate::queue::{schedules, service};
use crate::route::Router;
use crate::state::ConnState;
use crate::DbcError;

/// How often expired leases are looked for.
const REAP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Background upkeep on the database in use: expired leases go back to `pending` and due
/// schedules fire (every `REAP_EVERY`; their queues' consumers are woken), and once a minute finished tasks older than the retention are
/// deleted in small batches. Health and failover are the router's own loop.
pub(super) fn spawn(
    router: Arc<Router>,
    waker: Arc<Waker>,
    retention_days: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REAP_EVERY);
        let mut last_error = String::new();
        let mut last_purge = std::time::Instant::now();
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match router.state() {
                ConnState::Disconnected => break,
                ConnState::Reconnecting => continue,
                ConnState::Connected | ConnState::Failover => {}
            }
            let purge =
                retention_days > 0 && last_purge.elapsed() >= std::time::Duration::from_secs(60);
            let r = async {
                let _t = router.ticket().await;
                let b = router.active();
                let mut conn = b.pool().acquire().await?;
                let n = service::reap_expired(&mut conn, &b.store).await?;
                for q in schedules::fire_due(&mut conn, &b.store).await? {
                    waker.poke(&q);
                }
                if purge {
                    let removed =
                        service::purge_finished(&mut conn, &b.store, retention_days).await?;
                    if removed > 0 {
                        tracing::info!(
                            tasks = removed,
                            "finished tasks past their retention deleted"
                        );
                    }
                }
                Ok::<u64, DbcError>(n)
            }
            .await;
            if purge {
                last_purge = std::time::Instant::now();
            }
            match r {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(tasks = n, "expired leases returned to pending");
                    }
                    last_error.clear();
                }
                // once per distinct error, so an outage does not flood the log
                Err(e) if e.to_string() != last_error => {
                    last_error = e.to_string();
                    tracing::warn!("lease reaper: {last_error}");
                }
                Err(_) => {}
            }
        }
    })
}
