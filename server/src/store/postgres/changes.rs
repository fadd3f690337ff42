//! The workspace changes other replicas commit, followed over a connection
//! of this replica's own (`LISTEN`). A write that changes what dispatch
//! reads of a workspace (availability, coverage, cool-down, devices) sends
//! `NOTIFY` inside its transaction, so a change is announced exactly when it
//! commits, and never when it rolls back.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use super::{GenericClient, execute};
use crate::store::{StoreResult, WorkspaceChange};

/// The channel workspace changes are announced on.
const CHANNEL: &str = "lx_workspaces";

/// How long a lost listening connection waits before it connects again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Announces, inside the caller's transaction, that `workspace` changed.
/// The payload names the announcing replica, which skips its own.
pub(super) async fn announce(
    c: &impl GenericClient,
    replica: Uuid,
    workspace: Uuid,
) -> StoreResult<()> {
    execute(
        c,
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &format!("{replica}:{workspace}")],
    )
    .await
    .map(drop)
}

/// Listens for as long as the store lives (it aborts this task when
/// dropped), connecting again whenever the connection is lost. After each
/// (re)connection it reports [`WorkspaceChange::Missed`]: what changed while
/// nobody listened is unknown, so followers reload.
pub(super) async fn follow(
    config: tokio_postgres::Config,
    replica: Uuid,
    out: broadcast::Sender<WorkspaceChange>,
) {
    loop {
        let err = match listen(&config, replica, &out).await {
            Ok(()) => "the database closed the connection".to_owned(),
            Err(err) => err.to_string(),
        };
        tracing::warn!(%err, "lost the replicas' change feed; listening again shortly");
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// One listening connection, until it ends. A send finding no follower
/// is no error: followers come and go.
async fn listen(
    config: &tokio_postgres::Config,
    replica: Uuid,
    out: &broadcast::Sender<WorkspaceChange>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (payloads, mut received) = mpsc::unbounded_channel::<String>();
    // The connection is driven here; its notifications come out of it.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if payloads.send(n.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let own = replica.to_string();
    let _ = out.send(WorkspaceChange::Missed);
    while let Some(payload) = received.recv().await {
        let Some((from, workspace)) = payload.split_once(':') else {
            continue;
        };
        let Ok(workspace) = Uuid::parse_str(workspace) else {
            continue;
        };
        if from != own {
            let _ = out.send(WorkspaceChange::Changed(workspace));
        }
    }
    drop(client);
    match driver.await {
        Ok(Err(err)) => Err(err),
        _ => Ok(()),
    }
}
