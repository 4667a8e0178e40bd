//! Incidents: what probe outcomes and staff commands mean for a service, decided by a pure
//! state machine ([`machine::step`]) under a [`policy::Policy`] taken from the config.
//!
//! This room performs no I/O and reads no clock: time is an argument, decisions are
//! returned as [`machine::Action`]s for the store and the notifiers to carry out. It knows
//! nothing of mail, HTTP or SQL.

pub mod machine;
pub mod policy;
mod stored;
pub mod timeline;
pub mod update;

pub use machine::{
    Action, Event, Incident, ServiceState, StaffMailKind, Status, Upstream, WebhookEvent, step,
};
pub use policy::{Context, Flapping, Level, Policy, Window};
pub use timeline::TimelineEvent;
pub use update::{MAX_TEXT, PublicUpdate, UpdateState};
