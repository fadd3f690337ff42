//! The MQTT broker's accounts: the server keeps them in its store (each
//! device logs in with its operator id, each fleet manager with its
//! workspace's account) and, when it manages a Mosquitto beside it, writes
//! the broker's password file and ACL from them and has it reload. The
//! store is the truth; the files follow it, retried until written.

pub mod mosquitto;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lx_protocol::api::MqttCredentialsDto;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::config::MqttConfig;
use crate::store::{MqttAccount, Store};
use mosquitto::MosquittoFiles;

/// The broker accounts the server keeps in its store, and the broker's
/// files it writes from them (when it manages a Mosquitto beside it).
#[derive(Debug)]
pub struct BrokerAccounts {
    files: Option<MosquittoFiles>,
    username: String,
    /// The server's own hash, made once per process.
    server_hash: String,
    device_url: String,
    /// One writer of the files at a time.
    writing: Mutex<()>,
    /// Wakes the background writer after a failed write.
    rewrite: Arc<tokio::sync::Notify>,
    rewriter_started: std::sync::atomic::AtomicBool,
}

impl BrokerAccounts {
    /// `None` when the fleet link is off.
    pub fn from_config(config: &MqttConfig) -> Option<Self> {
        if !config.enabled() {
            return None;
        }
        let m = &config.mosquitto;
        let files = (!m.password_file.as_os_str().is_empty()).then(|| MosquittoFiles {
            password_file: m.password_file.clone(),
            acl_file: m.acl_file.clone(),
            pid_file: (!m.pid_file.as_os_str().is_empty()).then(|| m.pid_file.clone()),
        });
        Some(Self {
            files,
            username: config.username.clone(),
            server_hash: mosquitto::new_hash(&config.password),
            device_url: config.device_url().to_owned(),
            writing: Mutex::new(()),
            rewrite: Arc::default(),
            rewriter_started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the server issues accounts (it writes the broker's files).
    pub fn managed(&self) -> bool {
        self.files.is_some()
    }

    /// A new account for `username`: the stored record and the
    /// credentials to show once. Without managed files, only the URL.
    pub fn issue(
        &self,
        username: String,
        workspace_id: Uuid,
        operator_id: Option<Uuid>,
        now: i64,
    ) -> (Option<MqttAccount>, MqttCredentialsDto) {
        if !self.managed() {
            let dto = MqttCredentialsDto {
                url: self.device_url.clone(),
                username: None,
                password: None,
            };
            return (None, dto);
        }
        let password = hex::encode(rand::random::<[u8; 24]>());
        let account = MqttAccount {
            username: username.clone(),
            password_hash: mosquitto::new_hash(&password),
            workspace_id,
            operator_id,
            created_ms: now,
        };
        let dto = MqttCredentialsDto {
            url: self.device_url.clone(),
            username: Some(username),
            password: Some(password),
        };
        (Some(account), dto)
    }

    /// Rewrites the broker's files from the store and has it reload them.
    pub async fn sync(&self, store: &dyn Store) -> anyhow::Result<()> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        let _one_writer = self.writing.lock().await;
        let accounts = store.mqtt_accounts().await?;
        let files = files.clone();
        let server = (self.username.clone(), self.server_hash.clone());
        tokio::task::spawn_blocking(move || files.write((&server.0, &server.1), &accounts))
            .await
            .context("writing the broker's files")??;
        Ok(())
    }

    /// [`Self::sync`] after an account changed in the store. The store is
    /// the truth, so a failed write loses nothing: it is retried in the
    /// background (1 s, doubling to a minute) until the files are written,
    /// and the account just stored works from then on.
    pub async fn sync_or_retry(self: &Arc<Self>, store: &Arc<dyn Store>) {
        if let Err(err) = self.sync(store.as_ref()).await {
            tracing::error!(
                error = %format!("{err:#}"),
                "the broker's accounts could not be written; retrying in the background"
            );
            self.start_rewriter(store);
            self.rewrite.notify_one();
        }
    }

    fn start_rewriter(self: &Arc<Self>, store: &Arc<dyn Store>) {
        use std::sync::atomic::Ordering;
        if self.rewriter_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let accounts = Arc::downgrade(self);
        let rewrite = Arc::clone(&self.rewrite);
        let store = Arc::clone(store);
        tokio::spawn(async move {
            loop {
                rewrite.notified().await;
                let mut wait = Duration::from_secs(1);
                loop {
                    tokio::time::sleep(wait).await;
                    let Some(accounts) = accounts.upgrade() else {
                        return;
                    };
                    match accounts.sync(store.as_ref()).await {
                        Ok(()) => {
                            tracing::info!("the broker's accounts are written");
                            break;
                        }
                        Err(err) => {
                            tracing::warn!(error = %format!("{err:#}"), retry_in = ?wait * 2, "the broker's accounts still cannot be written");
                            wait = (wait * 2).min(Duration::from_secs(60));
                        }
                    }
                }
            }
        });
    }
}
