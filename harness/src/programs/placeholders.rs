//! Placeholders in a program's `command` and `env` values and in `{ template }`
//! data, Python format-string style: `{port}`, `{port:NAME}`, `{host:NAME}`,
//! `{addr:NAME}`, and `{VAR}`, a variable a regex captured earlier in the run;
//! `{{` and `}}` are literal braces.
//!
//! A template is parsed once, when the scenario is loaded, so an unknown name or a
//! stray brace is an error with its line and column before anything runs; at run
//! time expanding it only looks the addresses and variables up.

use std::net::SocketAddr;
use std::ops::Range;

/// What a placeholder stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    /// `{port}`: the port of the server whose command this is.
    OwnPort,
    /// `{port:NAME}`.
    Port(String),
    /// `{host:NAME}`: the IP address, without brackets (`127.0.0.1`, `::1`).
    Host(String),
    /// `{addr:NAME}`: `host:port` (`[::1]:9000` for IPv6).
    Addr(String),
    /// `{VAR}`: a variable a regex captured earlier in the run (in `{ template }`
    /// data; in a json-header `send_frame` header also `{md5}` and `{size}`).
    Var(String),
}

impl Placeholder {
    /// The server (or proxy) this placeholder names, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Placeholder::OwnPort | Placeholder::Var(_) => None,
            Placeholder::Port(name) | Placeholder::Host(name) | Placeholder::Addr(name) => {
                Some(name)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Slot(Placeholder),
}

/// A parsed string with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// A placeholder that cannot be parsed, with its byte range in the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub range: Range<usize>,
    pub message: String,
    pub hint: String,
}

const FORMS: &str =
    "placeholders: {port}, {port:NAME}, {host:NAME}, {addr:NAME}; write {{ and }} for literal braces";

impl Template {
    /// Parses `text`. `own_port` says whether `{port}` means anything here (a
    /// server's own command); `known` says whether a server or proxy name exists.
    /// A bare name is an error: this is for text where variables have no meaning.
    pub fn parse(
        text: &str,
        own_port: bool,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Self, TemplateError> {
        Self::parse_inner(text, own_port, false, known)
    }

    /// Parses a program's `command` item or `env` value: like [`Template::parse`],
    /// and a bare name `{token}` is a variable, resolved when the program starts.
    /// Whether some regex captures it is for the caller to check.
    pub fn parse_command(
        text: &str,
        own_port: bool,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Self, TemplateError> {
        Self::parse_inner(text, own_port, true, known)
    }

    /// Parses `{ template = "..." }` data: besides `{port:NAME}`, `{host:NAME}` and
    /// `{addr:NAME}`, a bare name `{token}` is a variable. Whether some regex
    /// captures it is for the caller to check, once the whole scenario is read.
    pub fn parse_data(text: &str, known: &dyn Fn(&str) -> bool) -> Result<Self, TemplateError> {
        Self::parse_inner(text, false, true, known)
    }

    /// The variables it uses.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.placeholders().filter_map(|p| match p {
            Placeholder::Var(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The bytes of `{ template }` data: text as UTF-8, placeholders replaced,
    /// variables as the bytes they captured. The first variable `var` does not know
    /// yet is the error.
    pub fn expand_bytes(
        &self,
        lookup: &dyn Fn(&str) -> Option<SocketAddr>,
        var: &dyn Fn(&str) -> Option<bytes::Bytes>,
    ) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Slot(Placeholder::Var(name)) => match var(name) {
                    Some(value) => out.extend_from_slice(&value),
                    None => return Err(name.clone()),
                },
                Piece::Slot(slot) => {
                    let one = Template {
                        pieces: vec![Piece::Slot(slot.clone())],
                    };
                    out.extend_from_slice(one.expand(None, lookup).as_bytes());
                }
            }
        }
        Ok(out)
    }

    /// The text of a `command` item or `env` value: [`Template::expand`], with
    /// variables replaced by what they captured (as UTF-8; a byte that is not
    /// UTF-8 becomes U+FFFD, since an argument is text). The first variable `var`
    /// does not know yet is the error.
    pub fn expand_text(
        &self,
        own: Option<u16>,
        lookup: &dyn Fn(&str) -> Option<SocketAddr>,
        var: &dyn Fn(&str) -> Option<bytes::Bytes>,
    ) -> Result<String, String> {
        if let Some(missing) = self.variables().find(|name| var(name).is_none()) {
            return Err(missing.to_owned());
        }
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Slot(Placeholder::Var(name)) => {
                    let value = var(name).unwrap_or_default();
                    out.push_str(&String::from_utf8_lossy(&value));
                }
                Piece::Text(text) => out.push_str(text),
                Piece::Slot(slot) => {
                    let one = Template {
                        pieces: vec![Piece::Slot(slot.clone())],
                    };
                    out.push_str(&one.expand(own, lookup));
                }
            }
        }
        Ok(out)
    }

    /// The template as it would be written in a file (quoted), for messages.
    pub fn source(&self) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(&text.replace('{', "{{").replace('}', "}}")),
                Piece::Slot(slot) => out.push_str(&written(slot)),
            }
        }
        format!("{out:?}")
    }

    /// Whether it uses any variable (and so can only be expanded at run time).
    pub fn has_variables(&self) -> bool {
        self.variables().next().is_some()
    }

    fn parse_inner(
        text: &str,
        own_port: bool,
        variables: bool,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text.char_indices().peekable();
        while let Some((at, c)) = rest.next() {
            match c {
                '{' if rest.peek().map(|&(_, c)| c) == Some('{') => {
                    rest.next();
                    literal.push('{');
                }
                '}' if rest.peek().map(|&(_, c)| c) == Some('}') => {
                    rest.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(TemplateError {
                        range: at..at + 1,
                        message: "a single `}` in a template".into(),
                        hint: "write `}}` for a literal brace".into(),
                    })
                }
                '{' => {
                    let Some(len) = text[at + 1..].find('}') else {
                        return Err(TemplateError {
                            range: at..text.len(),
                            message: "a `{` that is never closed".into(),
                            hint: format!("write `{{{{` for a literal brace; {FORMS}"),
                        });
                    };
                    let inner = &text[at + 1..at + 1 + len];
                    let range = at..at + len + 2;
                    let slot = parse_slot(inner, own_port, variables, known).map_err(
                        |(message, hint)| TemplateError {
                            range: range.clone(),
                            message,
                            hint,
                        },
                    )?;
                    // Skip the characters of the placeholder.
                    while rest.peek().is_some_and(|&(i, _)| i < range.end) {
                        rest.next();
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Slot(slot));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self { pieces })
    }

    /// A template without placeholders: `text` as it is.
    pub fn literal(text: &str) -> Self {
        Self {
            pieces: vec![Piece::Text(text.to_owned())],
        }
    }

    /// The placeholders it uses.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Slot(slot) => Some(slot),
            Piece::Text(_) => None,
        })
    }

    /// The text with every placeholder replaced. `own` is the port of the server
    /// whose command this is; `lookup` gives the address of a server or proxy. A
    /// name the loader accepted always resolves, so a missing one leaves the
    /// placeholder as written (it shows in the program's error, never silently).
    pub fn expand(&self, own: Option<u16>, lookup: &dyn Fn(&str) -> Option<SocketAddr>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Slot(slot) => {
                    let value = match slot {
                        Placeholder::OwnPort => own.map(|p| p.to_string()),
                        Placeholder::Port(name) => lookup(name).map(|a| a.port().to_string()),
                        Placeholder::Host(name) => lookup(name).map(|a| a.ip().to_string()),
                        Placeholder::Addr(name) => lookup(name).map(|a| a.to_string()),
                        Placeholder::Var(_) => None,
                    };
                    match value {
                        Some(value) => out.push_str(&value),
                        None => out.push_str(&written(slot)),
                    }
                }
            }
        }
        out
    }
}

fn written(slot: &Placeholder) -> String {
    match slot {
        Placeholder::OwnPort => "{port}".into(),
        Placeholder::Port(name) => format!("{{port:{name}}}"),
        Placeholder::Host(name) => format!("{{host:{name}}}"),
        Placeholder::Addr(name) => format!("{{addr:{name}}}"),
        Placeholder::Var(name) => format!("{{{name}}}"),
    }
}

fn parse_slot(
    inner: &str,
    own_port: bool,
    variables: bool,
    known: &dyn Fn(&str) -> bool,
) -> Result<Placeholder, (String, String)> {
    if variables && inner != "port" && crate::matcher::is_variable_name(inner) {
        return Ok(Placeholder::Var(inner.to_owned()));
    }
    if inner == "port" {
        return if own_port {
            Ok(Placeholder::OwnPort)
        } else {
            Err((
                "`{port}` means a server's own port, and this is not a server's command".into(),
                "name the server: `{port:NAME}`, `{host:NAME}` or `{addr:NAME}`".into(),
            ))
        };
    }
    let Some((kind, name)) = inner.split_once(':') else {
        return Err((
            format!("unknown placeholder `{{{inner}}}`"),
            FORMS.to_string(),
        ));
    };
    let make: fn(String) -> Placeholder = match kind {
        "port" => Placeholder::Port,
        "host" => Placeholder::Host,
        "addr" => Placeholder::Addr,
        _ => {
            return Err((
                format!("unknown placeholder `{{{inner}}}`"),
                FORMS.to_string(),
            ))
        }
    };
    if !known(name) {
        return Err((
            format!("`{{{inner}}}` names no server: there is no server `{name}` in this file"),
            FORMS.to_string(),
        ));
    }
    Ok(make(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> bool {
        matches!(name, "srv" | "db")
    }

    fn addr_of(name: &str) -> Option<SocketAddr> {
        match name {
            "srv" => Some("127.0.0.1:4000".parse().unwrap()),
            "db" => Some("[::1]:5000".parse().unwrap()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_are_replaced_and_double_braces_are_literal() {
        let t = Template::parse(
            "--to={addr:srv} -p {port} {{json}} {host:db}:{port:db}",
            true,
            &known,
        )
        .unwrap();
        assert_eq!(
            t.expand(Some(7), &addr_of),
            "--to=127.0.0.1:4000 -p 7 {json} ::1:5000"
        );
        assert_eq!(
            t.placeholders().filter_map(Placeholder::name).count(),
            3,
            "{t:?}"
        );
    }

    #[test]
    fn bad_placeholders_point_at_themselves() {
        let e = Template::parse("x {port:nope} y", true, &known).unwrap_err();
        assert_eq!(e.range, 2..13);
        assert!(e.message.contains("no server `nope`"), "{}", e.message);
        let e = Template::parse("{port}", false, &known).unwrap_err();
        assert!(e.message.contains("own port"), "{}", e.message);
        let e = Template::parse("awk '{print $1}'", true, &known).unwrap_err();
        assert!(e.message.contains("unknown placeholder"), "{}", e.message);
        assert!(e.hint.contains("{{"), "{}", e.hint);
        assert_eq!(
            Template::parse("a } b", true, &known).unwrap_err().range,
            2..3
        );
        assert_eq!(
            Template::parse("a { b", true, &known).unwrap_err().range,
            2..5
        );
    }

    #[test]
    fn command_variables_expand_when_known_and_name_the_first_missing_one() {
        let t = Template::parse_command("--token={token} {port} {{x}} {host:srv}", true, &known)
            .unwrap();
        assert!(t.has_variables());
        let var = |name: &str| (name == "token").then(|| bytes::Bytes::from_static(b"a\xffb"));
        assert_eq!(
            t.expand_text(Some(9), &addr_of, &var).unwrap(),
            "--token=a\u{fffd}b 9 {x} 127.0.0.1"
        );
        let t = Template::parse_command("{token}-{other}", false, &known).unwrap();
        assert_eq!(t.expand_text(None, &addr_of, &var).unwrap_err(), "other");
        assert_eq!(t.source(), "\"{token}-{other}\"");
        // Outside commands and templates a bare name stays an error.
        assert!(Template::parse("{token}", false, &known).is_err());
    }

    #[test]
    fn non_ascii_text_survives() {
        let t = Template::parse("é{port}ü", true, &known).unwrap();
        assert_eq!(t.expand(Some(1), &addr_of), "é1ü");
    }
}
