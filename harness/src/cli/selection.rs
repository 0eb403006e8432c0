//! The selection flags `run` and `check` share: `--filter`, `-E`, `--partition`,
//! `--list`. Bad expressions and partition specs are usage errors with a caret
//! under the bad token.

use std::path::Path;

use clap::Args;

use crate::scenario::Scenario;
use crate::select::{filter, FilterExpr, Partition, Selection};

#[derive(Debug, Args, Clone, Default)]
pub struct SelectionArgs {
    /// Run only scenarios whose name or path contains TEXT, or that carry the tag
    /// TEXT. Repeat to widen the selection.
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// A filter expression: name(GLOB), tag(GLOB), path(GLOB), all(), none(),
    /// combined with and/&, or/|, not/! and parentheses; globs are case-insensitive.
    /// Repeat to widen the selection; with --filter, both must agree.
    #[arg(long = "filter-expr", short = 'E', value_name = "EXPR")]
    pub exprs: Vec<String>,
    /// Run only this CI job's share of the selection: count:K/N (round-robin per
    /// folder), slice:K/N (round-robin over all) or hash:K/N (by path hash).
    #[arg(long, value_name = "KIND:K/N")]
    pub partition: Option<String>,
    /// Print the selected scenarios (file, then name) and exit without running them.
    #[arg(long)]
    pub list: bool,
}

impl SelectionArgs {
    /// Parses the expressions and the partition; `Err` is the rendered usage error.
    pub fn selection(&self) -> Result<Selection, String> {
        let mut exprs = Vec::with_capacity(self.exprs.len());
        for text in &self.exprs {
            let expr = FilterExpr::parse(text)
                .map_err(|e| filter::render_error("filter expression (-E)", text, &e))?;
            exprs.push(expr);
        }
        let partition = match &self.partition {
            Some(text) => Some(
                Partition::parse(text)
                    .map_err(|e| filter::render_error("--partition", text, &e))?,
            ),
            None => None,
        };
        Ok(Selection {
            words: self.filter.clone(),
            exprs,
            partition,
        })
    }
}

/// `--list`: one line per selected scenario, `FILE<TAB>NAME`, on stdout.
pub fn print_list<'a>(scenarios: impl IntoIterator<Item = &'a Scenario>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    for scenario in scenarios {
        let _ = writeln!(stdout, "{}\t{}", display(&scenario.path), scenario.name);
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
