//! Configuration hot reload: on SIGHUP, and when the file's content changes
//! (its SHA-256 is checked every [`WATCH_PERIOD`]), the file is parsed and
//! validated again. A valid file is published on a
//! `watch::Receiver<Arc<NodeConfig>>` that subsystems follow (keys and
//! tenant limits here; price caps and rate cards hook on with one
//! `apply(&config)` each); an invalid one is refused with a log line and
//! `gatemesh_config_reloads_total{result="rejected"}`, and the old
//! configuration stays. Settings read only at start (listeners, node
//! identity, cluster, mesh, logging) are reported as needing a restart and
//! kept at their running values in what is published. A reload changes
//! only the node whose file changed; changes for the whole cluster go
//! through the admin API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::NodeConfig;

/// How often the file's content is checked.
pub const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Watches `path` and SIGHUP; returns the channel of applied configurations
/// (starting with `initial`) and the watcher task.
pub fn spawn(
    path: PathBuf,
    initial: Arc<NodeConfig>,
    metrics: api::Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> (
    watch::Receiver<Arc<NodeConfig>>,
    tokio::task::JoinHandle<()>,
) {
    // From the text the running configuration was loaded from, not the
    // file as it is now: an edit made since is then seen at the first tick.
    let mut last_hash = initial.source_sha256.or_else(|| content_hash(&path));
    let (tx, rx) = watch::channel(initial);
    let task = tokio::spawn(async move {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(WATCH_PERIOD);
        loop {
            #[cfg(unix)]
            let signal = async {
                match hangup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let signal = std::future::pending::<()>();
            let forced = tokio::select! {
                () = signal => true,
                _ = tick.tick() => false,
                _ = shutdown.changed() => return,
            };
            let hash = content_hash(&path);
            if !forced && hash == last_hash {
                continue;
            }
            last_hash = hash;
            let reason = if forced { "SIGHUP" } else { "file changed" };
            match NodeConfig::load(&path) {
                Ok(new) => {
                    let old = tx.borrow().clone();
                    let kept = keep_restart_only(new, &old);
                    metrics.record_config_reload(true);
                    tracing::info!(path = %path.display(), reason, "configuration reloaded");
                    tx.send_replace(Arc::new(kept));
                }
                Err(error) => {
                    metrics.record_config_reload(false);
                    tracing::error!(path = %path.display(), reason, %error, "configuration reload refused; the running configuration stays");
                }
            }
        }
    });
    (rx, task)
}

/// `new` with the settings that need a restart put back to `old`'s values
/// (each difference logged).
pub fn keep_restart_only(mut new: NodeConfig, old: &NodeConfig) -> NodeConfig {
    for section in new.needs_restart(old) {
        tracing::warn!(
            section,
            "configuration change needs a restart; ignored until then"
        );
    }
    new.node = old.node.clone();
    new.http = old.http.clone();
    new.admin = old.admin.clone();
    new.cluster = old.cluster.clone();
    new.mesh = old.mesh.clone();
    new.log = old.log.clone();
    new
}

fn content_hash(path: &std::path::Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file changes after it was loaded but before the watcher starts
    /// (the node builds its listeners and mesh in between): the change is
    /// applied at the first tick, not missed until the next edit.
    #[tokio::test]
    async fn an_edit_made_before_the_watcher_started_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let base = "[node]\nname = \"a\"\nregion = \"fra\"\n";
        std::fs::write(&path, base).unwrap();
        let loaded = NodeConfig::load(&path).unwrap();
        std::fs::write(&path, format!("{base}[jobs]\nmax_attempts = 2\n")).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (mut updates, task) = spawn(path, Arc::new(loaded), api::Metrics::new(), stop);
        tokio::time::timeout(WATCH_PERIOD * 5, updates.changed())
            .await
            .expect("the edit is applied")
            .unwrap();
        assert_eq!(updates.borrow().jobs.max_attempts, 2);
        let _ = stop_tx.send(true);
        task.await.unwrap();
    }
}
