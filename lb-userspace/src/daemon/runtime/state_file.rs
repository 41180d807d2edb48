//! The server state file at work (see `daemon::server_state`): applied at start and after a
//! reload to the backends that load it, written after every operator change and on stop.
use std::collections::BTreeMap;

use super::Runtime;
use crate::{
    api::stats::servers_state,
    daemon::{
        server_state::{self, StateFile},
        servers::Admin,
    },
    dataplane::ids::ServerId,
};

/// The state files of a configuration, by path, opened before any `chroot`.
#[derive(Default)]
pub struct StateFiles {
    files: BTreeMap<std::path::PathBuf, StateFile>,
}

impl StateFiles {
    /// Opens the files `cfg`'s backends load (or reuses those already open: after a chroot a
    /// path outside it cannot be opened again).
    pub fn open(cfg: &crate::config::Config, mut old: StateFiles) -> StateFiles {
        let mut files = BTreeMap::new();
        for b in &cfg.backends {
            let Some(path) = server_state::path_for(&cfg.global, b) else {
                continue;
            };
            if files.contains_key(&path) {
                continue;
            }
            let file = match old.files.remove(&path) {
                Some(f) => f,
                None => match StateFile::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!(
                            "[WARNING] server state file: {e:#}; backend '{}' starts from the configuration",
                            b.name
                        );
                        continue;
                    }
                },
            };
            files.insert(path, file);
        }
        StateFiles { files }
    }

    /// A state file's content, through the directory opened before any `chroot` when it is
    /// one of these; `None` when missing or unreadable.
    pub fn read(&self, path: &std::path::Path) -> Option<String> {
        match self.files.get(path) {
            Some(f) => f.read().ok().flatten(),
            None => std::fs::read_to_string(path).ok(),
        }
    }
}

impl Runtime {
    /// Applies the saved state of every backend that loads one (`load-server-state-from-file`):
    /// admin state, weight, and health (a server saved DOWN starts DOWN and must pass `rise`
    /// checks). Servers the file does not name start from the configuration.
    pub fn load_server_state(&mut self) {
        let mut todo = Vec::new();
        for (path, file) in &self.state_files.files {
            let saved = match file.read() {
                Ok(Some(text)) => match server_state::parse(&text) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!(
                            "[WARNING] server state file {}: {e:#}; ignored",
                            path.display()
                        );
                        continue;
                    }
                },
                Ok(None) => continue,
                Err(e) => {
                    eprintln!("[WARNING] server state file: {e:#}; ignored");
                    continue;
                }
            };
            for s in saved {
                let Some(b) = self.cfg.backends.iter().find(|b| b.name == s.backend) else {
                    continue;
                };
                if server_state::path_for(&self.cfg.global, b).as_ref() != Some(path) {
                    continue;
                }
                if let Some(id) = self.bal.servers().find(&s.backend, &s.server) {
                    todo.push((id, s));
                }
            }
        }
        let mut applied = 0;
        for (id, s) in todo {
            match self.apply_saved(id, &s) {
                Ok(()) => applied += 1,
                Err(e) => eprintln!(
                    "[WARNING] server state file: {}/{}: {e:#}",
                    s.backend, s.server
                ),
            }
        }
        if applied > 0 {
            eprintln!("[NOTICE] server state file: state of {applied} server(s) applied");
        }
    }

    fn apply_saved(&mut self, id: ServerId, s: &server_state::Saved) -> anyhow::Result<()> {
        if s.admin == Admin::Maint {
            self.checkers.enter_maintenance(id);
        } else if !s.up && self.checkers.is_checked(id) {
            self.checkers.force(id, false);
        }
        let weight = s.weight.min(crate::config::Server::MAX_WEIGHT);
        self.bal.change(id, |st| {
            st.admin = s.admin;
            st.weight = weight;
            if s.admin != Admin::Maint {
                st.up = s.up;
            }
        })
    }

    /// Writes the state files: the global one gets every backend, a local one its backend.
    pub fn save_server_state(&mut self) {
        if self.state_files.files.is_empty() {
            return;
        }
        let st = self.api_state();
        let global = self.cfg.global.server_state_file.clone();
        for (path, file) in &self.state_files.files {
            let only = self
                .cfg
                .backends
                .iter()
                .find(|b| {
                    server_state::path_for(&self.cfg.global, b).as_ref() == Some(path)
                        && b.load_state == crate::config::LoadState::Local
                })
                .filter(|_| global.as_deref().is_none_or(|g| !path.ends_with(g)))
                .map(|b| b.name.as_str());
            let Ok(text) = servers_state(&st, only) else {
                continue;
            };
            if let Err(e) = file.write(&text) {
                eprintln!("[WARNING] server state file: {e:#}");
            }
        }
    }
}
