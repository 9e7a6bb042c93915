//! Fleet operations: backup policies (which VMs, what, when, how many
//! snapshots to keep), the VMs a policy selects across the registered
//! hypervisors, when its schedule is due, and its retention.
//!
//! Policies, tags and job history live in the state database (`db`);
//! the server's queue (`server/queue.rs`) runs a policy's jobs.

pub(crate) mod check;
pub(crate) mod retain;
pub(crate) mod schedule;
pub(crate) mod select;
