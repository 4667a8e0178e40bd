//! The rules one service's incidents follow. The config builds them
//! (`Config::policy`); this room knows nothing of the config file.

use std::time::{Duration, SystemTime};

/// An escalation level: who is mailed once the incident is `after` old and still not
/// acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Level {
    pub after: Duration,
    /// Addresses, channels (`slack:ops`) and, in a policy as configured, rotations
    /// (`rotation:primary`); the engine puts whoever is on call in a rotation's place
    /// before each step.
    pub to: Vec<String>,
    /// The last level: reminded this often while the incident is unacknowledged.
    #[serde(default)]
    pub repeat_every: Option<Duration>,
}

/// A planned maintenance window, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: SystemTime,
    pub end: SystemTime,
}

impl Window {
    pub fn contains(&self, t: SystemTime) -> bool {
        self.start <= t && t < self.end
    }
}

/// Flap detection as Nagios does it: over the last `window` results, the weighted share of
/// results that differ from the one before (recent ones weigh more). Flapping starts at
/// `high` and stops below `low`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flapping {
    pub window: usize,
    pub low: f64,
    pub high: f64,
}

impl Default for Flapping {
    /// Nagios' defaults: 21 results, 5% and 20%.
    fn default() -> Self {
        Flapping {
            window: 21,
            low: 0.05,
            high: 0.20,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub service: String,
    /// The service's probes; recovery needs every one of them to pass.
    pub probes: Vec<String>,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub customer_threshold: Duration,
    /// Least time between two updates to customers.
    pub update_every: Duration,
    /// Without a future ETA, customers are promised an update this long after each message.
    pub next_update: Duration,
    /// Ordered by `after`; level 0 is mailed when the incident opens (its `after` is
    /// normally zero).
    pub levels: Vec<Level>,
    pub maintenance: Vec<Window>,
    pub flapping: Flapping,
    /// Staff are reminded this long before customers are owed an update (zero: never).
    pub remind_before: Duration,
}

impl Policy {
    /// The window in force at `t`, if any.
    pub fn window_at(&self, t: SystemTime) -> Option<Window> {
        self.maintenance.iter().copied().find(|w| w.contains(t))
    }
}

/// The context a decision's notifiers need, written with the decision: the service's
/// name, its escalation levels and customer threshold (what a staff mail says is ahead),
/// and the canary probes (what a monitor-down notice names). A notifier carries the
/// decision out as it was decided, even after a reload changed the config.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Context {
    pub service_name: String,
    pub levels: Vec<Level>,
    pub customer_threshold: Duration,
    /// `service/probe` of each canary probe.
    pub canaries: Vec<String>,
    /// Whoever a rotation named in the decision's levels put on call, and why (one line
    /// each): what the staff mail says of who was paged.
    pub oncall: Vec<String>,
}

impl Context {
    /// The context of the service called `name`, under `policy`.
    pub fn of(name: &str, policy: &Policy, canaries: Vec<String>) -> Context {
        Context {
            service_name: name.to_string(),
            levels: policy.levels.clone(),
            customer_threshold: policy.customer_threshold,
            canaries,
            oncall: Vec::new(),
        }
    }
}
