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

/// Between two passes of a follower: waits until the engine publishes a new snapshot
/// (a decision, a status change), `nudge` is notified (work that another follower made,
/// such as a campaign the dispatcher planned), or `period` has passed; false once
/// `cancel` fires (the follower then stops).
pub async fn pause(
    cancel: &tokio_util::sync::CancellationToken,
    engine: &mut tokio::sync::watch::Receiver<std::sync::Arc<crate::engine::Snapshot>>,
    nudge: Option<&tokio::sync::Notify>,
    period: std::time::Duration,
) -> bool {
    let decided = async {
        // An engine that has stopped publishes nothing more: only the period is left.
        if engine.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let nudged = async {
        match nudge {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = decided => true,
        _ = nudged => true,
        _ = tokio::time::sleep(period) => true,
    }
}
