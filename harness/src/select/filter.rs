//! Filter expressions (`run -E EXPR`): which scenarios a run selects, in the spirit of
//! nextest's filtersets.
//!
//! ```text
//! expr    := or
//! or      := and  (("or"  | "|") and)*
//! and     := unary (("and" | "&") unary)*
//! unary   := ("not" | "!") unary | primary
//! primary := "(" expr ")" | name(GLOB) | tag(GLOB) | path(GLOB) | all() | none()
//! ```
//!
//! `not` binds tighter than `and`, which binds tighter than `or`, as in nextest. Globs
//! are case-insensitive and match the whole string (`*` also crosses `/` in paths, so
//! `path(*sticky*)` matches `scenarios/sticky/a.toml`). A glob's parentheses may nest:
//! `name(recv(2)*)` is one argument. Errors carry the byte range of the bad token so
//! the CLI can put a caret under it.

use std::ops::Range;

use globset::{GlobBuilder, GlobMatcher};

use crate::scenario::Scenario;

/// A parsed filter expression.
#[derive(Debug, Clone)]
pub enum FilterExpr {
    All,
    None,
    Name(Glob),
    Tag(Glob),
    Path(Glob),
    Not(Box<FilterExpr>),
    And(Box<FilterExpr>, Box<FilterExpr>),
    Or(Box<FilterExpr>, Box<FilterExpr>),
}

/// A case-insensitive glob with the text it was written as.
#[derive(Debug, Clone)]
pub struct Glob {
    pub text: String,
    matcher: GlobMatcher,
}

impl Glob {
    /// Compiles `text` as a case-insensitive glob over the whole string.
    pub fn new(text: &str) -> Result<Self, String> {
        let glob = GlobBuilder::new(text)
            .case_insensitive(true)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| e.kind().to_string())?;
        Ok(Self {
            text: text.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.matcher.is_match(text)
    }
}

/// Why an expression did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte range of the offending token in the expression (empty at the end).
    pub span: Range<usize>,
    pub message: String,
}

impl ExprError {
    fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
        }
    }
}

impl FilterExpr {
    /// Parses one expression.
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        let mut parser = Parser { text, pos: 0 };
        let expr = parser.or()?;
        parser.skip_space();
        if parser.pos < text.len() {
            let token = parser.peek_token();
            return Err(ExprError::new(
                token.clone(),
                format!(
                    "unexpected `{}`; expected `and`, `or` or the end",
                    &text[token]
                ),
            ));
        }
        Ok(expr)
    }

    /// Whether `scenario` is selected by this expression.
    pub fn matches(&self, scenario: &Scenario) -> bool {
        match self {
            FilterExpr::All => true,
            FilterExpr::None => false,
            FilterExpr::Name(glob) => glob.is_match(&scenario.name),
            FilterExpr::Tag(glob) => scenario.tags.iter().any(|t| glob.is_match(t)),
            FilterExpr::Path(glob) => glob.is_match(&scenario.path.to_string_lossy()),
            FilterExpr::Not(inner) => !inner.matches(scenario),
            FilterExpr::And(a, b) => a.matches(scenario) && b.matches(scenario),
            FilterExpr::Or(a, b) => a.matches(scenario) || b.matches(scenario),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

/// The functions an expression may call, for messages.
const FUNCTIONS: &str = "name(GLOB), tag(GLOB), path(GLOB), all() or none()";

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.text[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.text[self.pos..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    /// The span of the token at the cursor (a word, or one character), for errors.
    fn peek_token(&self) -> Range<usize> {
        let rest = self.rest();
        let word = rest
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(rest.len(), |(i, _)| i);
        let len = if word > 0 {
            word
        } else {
            rest.chars().next().map_or(0, char::len_utf8)
        };
        self.pos..self.pos + len
    }

    /// Consumes the operator word `word` or the symbol `symbol`, if next.
    fn operator(&mut self, word: &str, symbol: char) -> bool {
        self.skip_space();
        let rest = self.rest();
        if rest.starts_with(symbol) {
            self.pos += symbol.len_utf8();
            return true;
        }
        let after = rest.get(word.len()..).and_then(|s| s.chars().next());
        if rest.starts_with(word) && !after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.pos += word.len();
            return true;
        }
        false
    }

    fn or(&mut self) -> Result<FilterExpr, ExprError> {
        let mut left = self.and()?;
        while self.operator("or", '|') {
            let right = self.and()?;
            left = FilterExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<FilterExpr, ExprError> {
        let mut left = self.unary()?;
        while self.operator("and", '&') {
            let right = self.unary()?;
            left = FilterExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<FilterExpr, ExprError> {
        if self.operator("not", '!') {
            return Ok(FilterExpr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<FilterExpr, ExprError> {
        self.skip_space();
        if self.rest().is_empty() {
            return Err(ExprError::new(
                self.pos..self.pos,
                format!("the expression ends here; expected {FUNCTIONS}"),
            ));
        }
        if self.rest().starts_with('(') {
            let open = self.pos;
            self.pos += 1;
            let inner = self.or()?;
            self.skip_space();
            if !self.rest().starts_with(')') {
                let at = if self.rest().is_empty() {
                    open..open + 1
                } else {
                    self.peek_token()
                };
                return Err(ExprError::new(at, "this parenthesis is never closed"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        let token = self.peek_token();
        let word = &self.text[token.clone()];
        if word.is_empty() || !word.starts_with(|c: char| c.is_alphabetic()) {
            return Err(ExprError::new(
                token.clone(),
                format!("unexpected `{word}`; expected {FUNCTIONS}"),
            ));
        }
        let function = word.to_ascii_lowercase();
        if !matches!(function.as_str(), "name" | "tag" | "path" | "all" | "none") {
            return Err(ExprError::new(
                token,
                format!("unknown function `{word}`; expected {FUNCTIONS}"),
            ));
        }
        self.pos = token.end;
        self.skip_space();
        if !self.rest().starts_with('(') {
            return Err(ExprError::new(
                token,
                format!("`{word}` needs parentheses: `{function}(...)`"),
            ));
        }
        self.pos += 1;
        let (argument, argument_span) = self.argument(token.start)?;
        match function.as_str() {
            "all" | "none" => {
                if !argument.trim().is_empty() {
                    return Err(ExprError::new(
                        argument_span,
                        format!("`{function}()` takes no argument"),
                    ));
                }
                Ok(if function == "all" {
                    FilterExpr::All
                } else {
                    FilterExpr::None
                })
            }
            _ => {
                let pattern = argument.trim();
                if pattern.is_empty() {
                    return Err(ExprError::new(
                        argument_span,
                        format!("`{function}(...)` needs a glob, e.g. `{function}(*echo*)`"),
                    ));
                }
                let glob = Glob::new(pattern).map_err(|e| {
                    ExprError::new(
                        argument_span,
                        format!("`{pattern}` is not a valid glob: {e}"),
                    )
                })?;
                Ok(match function.as_str() {
                    "name" => FilterExpr::Name(glob),
                    "tag" => FilterExpr::Tag(glob),
                    _ => FilterExpr::Path(glob),
                })
            }
        }
    }

    /// The raw argument up to the `)` that balances the function's `(` (the cursor
    /// sits just after it), and its span.
    fn argument(&mut self, function_start: usize) -> Result<(String, Range<usize>), ExprError> {
        let start = self.pos;
        let mut depth = 0usize;
        for (offset, c) in self.rest().char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    let end = start + offset;
                    self.pos = end + 1;
                    return Ok((self.text[start..end].to_owned(), start..end));
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        Err(ExprError::new(
            function_start..self.text.len(),
            "this call is never closed: a `)` is missing",
        ))
    }
}

/// The usage error for a bad expression: the message, the expression, and a caret
/// line under the offending token.
pub fn render_error(flag: &str, text: &str, error: &ExprError) -> String {
    format!(
        "error: invalid {flag}: {}\n{}",
        error.message,
        caret_lines(text, &error.span)
    )
}

/// `  TEXT` then `  ^^^` under `span` (one caret at least; past the end when empty).
pub fn caret_lines(text: &str, span: &Range<usize>) -> String {
    let column = text.get(..span.start).map_or(0, |s| s.chars().count());
    let width = text
        .get(span.clone())
        .map_or(1, |s| s.chars().count())
        .max(1);
    format!("  {text}\n  {}{}\n", " ".repeat(column), "^".repeat(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str, path: &str, tags: &[&str]) -> Scenario {
        let text = format!(
            "name = {name:?}\ntags = {tags:?}\n[servers.s]\nbuiltin = \"echo\"\n[[clients]]\nscript = []\n"
        );
        crate::scenario::load_str(std::path::Path::new(path), &text).expect("valid")
    }

    fn selects(expr: &str, s: &Scenario) -> bool {
        FilterExpr::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e:?}"))
            .matches(s)
    }

    #[test]
    fn functions_and_operators_follow_precedence() {
        let echo = scenario(
            "Echo Basic",
            "scenarios/basics/echo.toml",
            &["smoke", "tcp"],
        );
        assert!(selects("name(echo*)", &echo));
        assert!(selects("NAME(*BASIC)", &echo));
        assert!(!selects("name(echo)", &echo));
        assert!(selects("tag(smo*)", &echo));
        assert!(selects("path(*basics*)", &echo));
        assert!(selects("all()", &echo));
        assert!(!selects("none()", &echo));
        assert!(selects("not tag(udp) and tag(tcp)", &echo));
        assert!(!selects("!tag(tcp)", &echo));
        // `and` binds tighter than `or`: none() or (all() and tag(tcp)).
        assert!(selects("none() | all() & tag(tcp)", &echo));
        assert!(!selects("(none() | all()) & tag(udp)", &echo));
        assert!(selects("tag(udp) or name(*echo*)", &echo));
    }

    #[test]
    fn globs_may_hold_balanced_parentheses() {
        let s = scenario("recv(2) then recv(10)", "a.toml", &[]);
        assert!(selects("name(recv(2)*)", &s));
    }

    #[test]
    fn errors_point_at_the_bad_token() {
        let cases = [
            ("name(x) and nmae(y)", 12..16, "unknown function `nmae`"),
            ("name(x) tag(y)", 8..11, "unexpected `tag`"),
            ("(name(x)", 0..1, "never closed"),
            ("name(x) and", 11..11, "the expression ends here"),
            ("name", 0..4, "needs parentheses"),
            ("name()", 5..5, "needs a glob"),
            ("all(x)", 4..5, "takes no argument"),
            ("name([)", 5..6, "not a valid glob"),
            ("name(x", 0..6, "never closed"),
            ("& tag(x)", 0..1, "unexpected `&`"),
        ];
        for (text, span, message) in cases {
            let error = FilterExpr::parse(text).expect_err(text);
            assert_eq!(error.span, span, "{text}: {error:?}");
            assert!(error.message.contains(message), "{text}: {error:?}");
        }
    }

    #[test]
    fn the_caret_sits_under_the_token() {
        let error = FilterExpr::parse("tag(a) | nmae(b)").unwrap_err();
        let rendered = render_error("filter expression", "tag(a) | nmae(b)", &error);
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines[1], "  tag(a) | nmae(b)");
        assert_eq!(lines[2], "           ^^^^");
    }
}
