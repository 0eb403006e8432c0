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
/// killed run never leaves half a record. A record that already says the same is
/// left alone: a suite rerun in a loop mostly records what it recorded last time,
/// and creating, writing and renaming a file costs more of a short run than
/// reading one.
pub fn save(path: &Path, record: &RerunRecord) -> Result<(), String> {
    let text = serde_json::to_string_pretty(record).map_err(|e| e.to_string())? + "\n";
    if std::fs::read(path).is_ok_and(|existing| existing == text.as_bytes()) {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text)
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
    fn saving_what_the_record_already_says_leaves_the_file_alone() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        let mut record = RerunRecord {
            selection: vec!["a.toml".into()],
            failed: Vec::new(),
        };
        save(&path, &record).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        save(&path, &record).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "rewritten");
        // A record that changed is written (by rename: a new file).
        record.failed.push("a.toml".into());
        save(&path, &record).unwrap();
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(load(&path).unwrap(), Some(record));
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
