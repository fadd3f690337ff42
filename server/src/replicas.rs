//! Keeping one replica in line with the others sharing its store: the
//! dispatch index follows the suppliers other replicas change. A stale index
//! costs a retry, never a wrong assignment (the store's compare-and-swap
//! decides), but an index that never learns of a supplier gone ONLINE
//! elsewhere would answer NO_COVERAGE for it.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::app::App;
use crate::store::WorkspaceChange;

/// Follows the store's workspace changes until `shutdown`; returns at once
/// for a store no other replica shares.
pub async fn follow(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let Some(mut changes) = app.store.workspace_changes() else {
        return;
    };
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = shutdown.changed() => return,
        };
        match change {
            Ok(WorkspaceChange::Changed(id)) => match app.store.workspace(id).await {
                Ok(Some(ws)) => app.dispatcher.sync(&ws),
                Ok(None) => app.dispatcher.remove(id),
                Err(err) => tracing::warn!(workspace = %id, %err, "supplier not re-read"),
            },
            Ok(WorkspaceChange::Missed) | Err(RecvError::Lagged(_)) => {
                match app.store.online_suppliers().await {
                    Ok(suppliers) => {
                        app.dispatcher.reload(&suppliers);
                        tracing::debug!(suppliers = suppliers.len(), "dispatch index reloaded");
                    }
                    Err(err) => tracing::warn!(%err, "dispatch index not reloaded"),
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
