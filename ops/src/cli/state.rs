//! The CLI's local state: the admin URL and token from `latchkey login`, and the proxy keys this
//! CLI created (so `latchkey env` can print them, with the device fingerprint of keys bound by
//! `keys bind-device`). Stored as JSON with mode 0600 in
//! `$LATCHKEY_CLI_CONFIG`, else `$XDG_CONFIG_HOME/latchkey/cli.json`, else
//! `~/.config/latchkey/cli.json`.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

/// A proxy key created by this CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedKey {
    pub id: String,
    pub name: String,
    pub providers: Vec<String>,
    pub key: String,
    pub created_at: String,
    /// The raw device fingerprint this key was bound to by `keys bind-device` (the server keeps
    /// only its hash); `latchkey env` prints it for the client's `x-device-fingerprint` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_fingerprint: Option<String>,
}

/// What the CLI remembers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CliState {
    pub url: Option<String>,
    pub token: Option<String>,
    #[serde(default)]
    pub keys: Vec<SavedKey>,
}

/// Where the state lives.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("LATCHKEY_CLI_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var("XDG_CONFIG_HOME") {
        Ok(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("latchkey").join("cli.json"))
}

impl CliState {
    /// Loads the state (empty when absent).
    pub fn load() -> anyhow::Result<Self> {
        let p = path()?;
        match std::fs::read_to_string(&p) {
            Ok(s) => {
                serde_json::from_str(&s).with_context(|| format!("{} is not valid", p.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliState::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }

    /// Saves the state atomically with mode 0600.
    pub fn save(&self) -> anyhow::Result<()> {
        let p = path()?;
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = p.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
        Ok(())
    }

    /// Removes the state file.
    pub fn remove() -> anyhow::Result<bool> {
        match std::fs::remove_file(path()?) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
