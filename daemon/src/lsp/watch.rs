//! Config files on disk, watched with `notify` (inotify on Linux): each workspace root (not
//! recursively: only its `.tether/` and `.mirrord/` matter), those two dirs, and the dir of every
//! open config file. A change re-verifies the file and republishes its diagnostics.

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    sync::Weak,
    time::Duration,
};

use notify::{EventKind, RecursiveMode, Watcher as _, event::AccessKind};
use tether_config::{MIRRORD_FILES, TETHER_FILES};
use tokio::sync::mpsc;

use super::{Shared, config_format};

/// Bursts of events (an editor's write-rename, a checkout) are handled once after this quiet time.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// The dirs of config files.
const CONFIG_DIRS: [&str; 2] = [".tether", ".mirrord"];

/// The `notify` watcher and the dirs it watches; dropping it stops watching.
#[derive(Debug)]
pub(super) struct Watcher {
    inner: notify::RecommendedWatcher,
    dirs: HashSet<PathBuf>,
}

impl Watcher {
    /// Starts the watcher and the task that handles its events (until `shared` is gone).
    pub(super) fn start(shared: Weak<Shared>) -> notify::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        let inner =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(ev)
                    if !matches!(
                        ev.kind,
                        EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
                    ) =>
                {
                    let _ = tx.send(ev.paths);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("watch error: {e}"),
            })?;
        tokio::spawn(handle_events(shared, rx));
        Ok(Self {
            inner,
            dirs: HashSet::new(),
        })
    }

    /// Watches a workspace root for `.tether/` and `.mirrord/`, and those dirs when they exist.
    pub(super) fn watch_root(&mut self, root: &Path) {
        self.watch_dir(root);
        for d in CONFIG_DIRS {
            let dir = root.join(d);
            if dir.is_dir() {
                self.watch_dir(&dir);
            }
        }
    }

    /// Watches a dir again: one that was removed and made anew (a branch switch) lost its
    /// inotify watch with its old inode.
    pub(super) fn rewatch_dir(&mut self, dir: &Path) {
        if self.dirs.remove(dir) {
            let _ = self.inner.unwatch(dir);
        }
        self.watch_dir(dir);
    }

    /// Watches one dir (not recursively), once.
    pub(super) fn watch_dir(&mut self, dir: &Path) {
        if self.dirs.contains(dir) {
            return;
        }
        match self.inner.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.dirs.insert(dir.to_owned());
            }
            Err(e) => tracing::debug!("cannot watch {}: {e}", dir.display()),
        }
    }
}

/// The config files directly in `root`'s `.tether/` and `.mirrord/`.
pub(super) fn config_files(root: &Path) -> Vec<PathBuf> {
    TETHER_FILES
        .iter()
        .chain(&MIRRORD_FILES)
        .map(|f| root.join(f))
        .filter(|p| p.is_file())
        .collect()
}

async fn handle_events(shared: Weak<Shared>, mut rx: mpsc::UnboundedReceiver<Vec<PathBuf>>) {
    while let Some(first) = rx.recv().await {
        let mut paths: BTreeSet<PathBuf> = first.into_iter().collect();
        while let Ok(Some(more)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
            paths.extend(more);
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for path in paths {
            let is_config_dir = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| CONFIG_DIRS.contains(&n));
            if is_config_dir {
                // A new `.tether/` (a checkout brought it): watch it and check what it holds.
                if path.is_dir() {
                    if let Some(w) = shared
                        .watcher
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_mut()
                    {
                        w.rewatch_dir(&path);
                    }
                    if let Some(root) = path.parent() {
                        for file in config_files(root) {
                            shared.refresh_from_disk(&file).await;
                        }
                    }
                }
            } else if config_format(&path).is_some() {
                shared.refresh_from_disk(&path).await;
            }
        }
    }
}
