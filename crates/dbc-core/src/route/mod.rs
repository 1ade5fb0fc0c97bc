//! Where operations run: the [`Router`] between the primary and the fallback database
//! (health, routing, failover and failback decisions, `router.rs`) and the failback's
//! data move ([`reconcile`], `reconcile.rs`).

pub mod reconcile;
pub mod router;

pub use reconcile::{reconcile, MoveReport};
pub use router::{Backend, Router, RouterConfig, Ticket};
