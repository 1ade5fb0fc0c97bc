//! The task queue's rules ([`service`]: insert, claim, status changes, leases, retention,
//! reading; many status changes at once: [`settle`]), workflows ([`workflows`]), queues as a whole (pause, resume, statistics:
//! [`queues`]), the group commit of concurrent single calls
//! ([`batch`]) and the wake-ups of idle consumers ([`wake`]). What a task is lives in
//! [`crate::task`]; everything that touches a database goes through
//! [`crate::store::Store`].

pub mod batch;
pub mod dead_letter;
pub mod lease;
pub mod queues;
pub mod schedules;
pub mod service;
pub mod settle;
pub mod unique;
pub mod wake;
pub mod workflows;
