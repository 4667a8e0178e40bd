//! Carrying decisions out: mail transport now; staff escalation, campaigns, pages,
//! autoresponder, hotline and webhooks build on it. Notifiers act only on what the store's
//! outbox hands them and report back whether it worked; they decide nothing.

pub mod autoreply;
pub mod dispatch;
pub mod hotline;
pub mod mail;
pub mod maintenance;
pub mod pages;
pub mod sieve;
pub mod staff;
pub mod templates;
pub mod webhook;
