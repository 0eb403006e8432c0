//! `--partition KIND:K/N`: split a selection across N CI jobs so that every selected
//! scenario runs in exactly one of them. The kinds keep nextest's meanings, with a
//! scenario folder standing where nextest has a test binary:
//!
//! - `count:K/N`: round-robin within each folder: the 1st, (N+1)th, ... scenario of
//!   every folder goes to job 1, the 2nd to job 2, and so on.
//! - `slice:K/N`: round-robin across the whole selection, whatever the folders.
//! - `hash:K/N`: by a hash of the scenario file's path, so a job's share does not
//!   move when scenarios are added or removed elsewhere.
//!
//! Partitioning applies after every filter, on the selection in its sorted order, so
//! all N jobs (same checkout, same command) agree on the split.

use std::ops::Range;
use std::path::Path;

use md5::{Digest, Md5};

use super::filter::ExprError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    Count,
    Hash,
    Slice,
}

/// One job's share: bucket `shard` (1-based) of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub kind: PartitionKind,
    pub shard: u64,
    pub total: u64,
}

impl Partition {
    /// Parses `count:K/N`, `hash:K/N` or `slice:K/N`; errors carry the span of the
    /// part that is wrong.
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        let error = |span: Range<usize>, message: &str| ExprError {
            span,
            message: message.to_owned(),
        };
        let Some(colon) = text.find(':') else {
            return Err(error(
                0..text.len(),
                "expected KIND:K/N, with KIND one of count, hash, slice (e.g. `hash:1/3`)",
            ));
        };
        let kind = match &text[..colon] {
            "count" => PartitionKind::Count,
            "hash" => PartitionKind::Hash,
            "slice" => PartitionKind::Slice,
            other => {
                return Err(error(
                    0..colon,
                    &format!("unknown partition kind `{other}`; expected count, hash or slice"),
                ))
            }
        };
        let numbers = colon + 1;
        let Some(slash) = text[numbers..].find('/').map(|i| numbers + i) else {
            return Err(error(
                numbers..text.len(),
                "expected K/N after the kind (job K of N, e.g. `1/3`)",
            ));
        };
        let number = |range: Range<usize>, what: &str| -> Result<u64, ExprError> {
            text[range.clone()]
                .parse::<u64>()
                .map_err(|_| error(range, &format!("{what} is not a whole number")))
        };
        let shard = number(numbers..slash, "K (this job's number)")?;
        let total = number(slash + 1..text.len(), "N (the number of jobs)")?;
        if total == 0 {
            return Err(error(slash + 1..text.len(), "N must be at least 1"));
        }
        if shard == 0 || shard > total {
            return Err(error(
                numbers..slash,
                &format!("K must be from 1 to N ({total})"),
            ));
        }
        Ok(Self { kind, shard, total })
    }

    /// Keeps the items of this job's share, in order. `path_of` gives each item's
    /// scenario file.
    pub fn select<T>(&self, items: Vec<T>, path_of: impl Fn(&T) -> &Path) -> Vec<T> {
        let mut seen_in_folder: std::collections::HashMap<std::path::PathBuf, u64> =
            std::collections::HashMap::new();
        items
            .into_iter()
            .enumerate()
            .filter(|(position, item)| {
                let bucket = match self.kind {
                    PartitionKind::Slice => *position as u64 % self.total,
                    PartitionKind::Count => {
                        let folder = path_of(item)
                            .parent()
                            .map(Path::to_path_buf)
                            .unwrap_or_default();
                        let seen = seen_in_folder.entry(folder).or_default();
                        let bucket = *seen % self.total;
                        *seen += 1;
                        bucket
                    }
                    PartitionKind::Hash => path_hash(path_of(item)) % self.total,
                };
                bucket == self.shard - 1
            })
            .map(|(_, item)| item)
            .collect()
    }
}

/// A hash of a path that is the same on every machine and Rust version.
fn path_hash(path: &Path) -> u64 {
    let digest = Md5::digest(path.to_string_lossy().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn paths() -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for folder in ["a", "b", "c"] {
            for i in 0..7 {
                paths.push(PathBuf::from(format!("s/{folder}/{i}.toml")));
            }
        }
        paths.push(PathBuf::from("s/d/only.toml"));
        paths
    }

    #[test]
    fn every_item_lands_in_exactly_one_job() {
        for kind in ["count", "hash", "slice"] {
            for total in 1..=5u64 {
                let mut all: Vec<PathBuf> = Vec::new();
                for shard in 1..=total {
                    let partition = Partition::parse(&format!("{kind}:{shard}/{total}")).unwrap();
                    all.extend(partition.select(paths(), |p| p.as_path()));
                }
                all.sort();
                let mut expected = paths();
                expected.sort();
                assert_eq!(all, expected, "{kind} with {total} jobs");
            }
        }
    }

    #[test]
    fn count_is_round_robin_per_folder_and_slice_across_all() {
        let count = Partition::parse("count:2/2").unwrap();
        let picked = count.select(paths(), |p| p.as_path());
        // Each folder of 7 gives its 2nd, 4th and 6th; the single-file folder gives none.
        assert_eq!(picked.len(), 9);
        assert!(picked.contains(&PathBuf::from("s/b/1.toml")));
        let slice = Partition::parse("slice:2/2").unwrap();
        let picked = slice.select(paths(), |p| p.as_path());
        // 22 items across all folders: positions 1, 3, ..., 21.
        assert_eq!(picked.len(), 11);
        assert!(picked.contains(&PathBuf::from("s/b/0.toml")));
        assert!(picked.contains(&PathBuf::from("s/d/only.toml")));
    }

    #[test]
    fn hash_shares_do_not_move_when_others_are_added() {
        let hash = Partition::parse("hash:1/3").unwrap();
        let before = hash.select(paths(), |p| p.as_path());
        let mut more = paths();
        more.insert(0, PathBuf::from("s/a/new.toml"));
        let after = hash.select(more, |p| p.as_path());
        assert!(before.iter().all(|p| after.contains(p)));
    }

    #[test]
    fn bad_specs_point_at_the_bad_part() {
        let cases = [
            ("hsah:1/2", 0..4, "unknown partition kind"),
            ("hash:0/2", 5..6, "K must be from 1 to N"),
            ("hash:3/2", 5..6, "K must be from 1 to N"),
            ("count:1/0", 8..9, "at least 1"),
            ("slice:x/2", 6..7, "not a whole number"),
            ("slice:1", 6..7, "expected K/N"),
            ("1/2", 0..3, "expected KIND:K/N"),
        ];
        for (text, span, message) in cases {
            let error = Partition::parse(text).expect_err(text);
            assert_eq!(error.span, span, "{text}: {error:?}");
            assert!(error.message.contains(message), "{text}: {error:?}");
        }
    }
}
