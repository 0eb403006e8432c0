//! The record `run --rerun-failed` reads: which scenarios of a selection did not pass
//! in its last run. Every `run` writes it (`target/wirecheck/rerun-HASH.json`, the
//! hash naming the selection, or the path given with `--record`), so the next
//! `--rerun-failed` of the same selection runs only what failed, or was skipped by
//! `--fail-fast`, or never finished.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// Where records live when `--record` is not given.
pub const RECORD_DIR: &str = "target/wirecheck";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerunRecord {
    /// The scenario files of the selection, in order.
    pub selection: Vec<PathBuf>,
    /// Those that did not pass.
    pub failed: Vec<PathBuf>,
}

/// The default record path of a selection: the same files in the same order give
/// the same name, so two different selections never overwrite each other's record.
pub fn default_path(selection: &[&Path]) -> PathBuf {
    let mut hasher = Md5::new();
    for path in selection {
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update(b"\n");
    }
    let digest = hex::encode(hasher.finalize());
    Path::new(RECORD_DIR).join(format!("rerun-{}.json", &digest[..16]))
}

/// Reads a record; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<RerunRecord>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("the rerun record {} is not valid: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read the rerun record {}: {e}",
            path.display()
        )),
    }
}

/// Writes a record, creating its folder; written to a temporary file first so a
/// killed run never leaves half a record.
pub fn save(path: &Path, record: &RerunRecord) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(record).map_err(|e| e.to_string())?;
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text + "\n")
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| format!("cannot write the rerun record {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/record.json");
        assert_eq!(load(&path).unwrap(), None);
        let record = RerunRecord {
            selection: vec!["a.toml".into(), "b.toml".into()],
            failed: vec!["b.toml".into()],
        };
        save(&path, &record).unwrap();
        assert_eq!(load(&path).unwrap(), Some(record));
        std::fs::write(&path, "{").unwrap();
        assert!(load(&path).unwrap_err().contains("not valid"));
    }

    #[test]
    fn selections_name_their_records() {
        let a = default_path(&[Path::new("x.toml"), Path::new("y.toml")]);
        let b = default_path(&[Path::new("x.toml")]);
        assert_ne!(a, b);
        assert_eq!(a, default_path(&[Path::new("x.toml"), Path::new("y.toml")]));
        assert!(a.starts_with(RECORD_DIR));
    }
}
