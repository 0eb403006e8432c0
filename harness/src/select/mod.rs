//! Which scenarios a command works on: `--filter` words, `-E` filter expressions,
//! `--partition` across CI jobs, and the record `--rerun-failed` reads. `run` and
//! `check` share it, so both see the same selection for the same flags.

pub mod filter;
pub mod partition;
pub mod rerun;

pub use filter::{ExprError, FilterExpr};
pub use partition::Partition;

use crate::scenario::Scenario;

/// The parsed selection flags.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--filter TEXT`: a name or path containing TEXT, or the tag TEXT (any of them).
    pub words: Vec<String>,
    /// `-E EXPR`: any of them (nextest's union of filtersets).
    pub exprs: Vec<FilterExpr>,
    pub partition: Option<Partition>,
}

impl Selection {
    /// Whether the filters (not the partition) keep `scenario`: every kind of filter
    /// given must agree, and within a kind any one filter suffices.
    pub fn matches(&self, scenario: &Scenario) -> bool {
        let words = self.words.is_empty()
            || self.words.iter().any(|word| {
                scenario.name.contains(word.as_str())
                    || scenario.path.to_string_lossy().contains(word.as_str())
                    || scenario.tags.iter().any(|t| t == word)
            });
        let exprs = self.exprs.is_empty() || self.exprs.iter().any(|e| e.matches(scenario));
        words && exprs
    }

    /// Filters, then keeps this job's partition, in the given order.
    pub fn apply<T>(&self, items: Vec<T>, scenario_of: impl Fn(&T) -> &Scenario) -> Vec<T> {
        let filtered: Vec<T> = items
            .into_iter()
            .filter(|item| self.matches(scenario_of(item)))
            .collect();
        match &self.partition {
            Some(partition) => partition.select(filtered, |item| scenario_of(item).path.as_path()),
            None => filtered,
        }
    }

    /// Whether any flag narrows the selection.
    pub fn is_narrowed(&self) -> bool {
        !self.words.is_empty() || !self.exprs.is_empty() || self.partition.is_some()
    }
}
