//! tocsin: an uptime monitor that carries out the outage communication plan.
//!
//! Rooms, with dependencies pointing one way: `probe` (protocols, no config or I/O
//! beyond the target) ← `config` (the file, resolved into probe checks) ← `scheduler`
//! (when to run) → `metrics` and the latest-result table ← `web` (HTTP endpoints).
//! `heartbeat` keeps the push monitors' tokens and pings (in `store`) and decides their
//! outcomes for the scheduler; `web` receives the pings.

pub mod app;
pub mod audience;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod dkim;
pub mod drill;
pub mod engine;
pub mod heartbeat;
pub mod incident;
pub mod lease;
pub mod links;
pub mod metrics;
pub mod notify;
pub mod oncall;
pub mod probe;
pub mod scheduler;
pub mod secret;
pub mod store;
pub mod text;
pub mod votes;
pub mod web;
