//! Templates made into bytes while the run goes: `{ template }` DATA in every place
//! DATA stands (sends, exact expectations, `contains`, `expect_line`, frame
//! payloads and bodies, a client program's `stdin` and output MATCH) and the
//! `{VAR}`s of a program's `command` and `env`.
//!
//! A template is resolved when it is used: a step's when the step starts, a
//! program's when the program starts. A variable that no step captured by then
//! is a failure that names the step which captures it, so the user can order the
//! two with `signal`/`wait`.

use bytes::Bytes;

use super::RunContext;
use crate::matcher::Match;
use crate::scenario::{Action, Data, Expected, Template};

/// What a failure says about `{name}` having no value `when` (e.g. "before this
/// step started") it was needed; `remedy` says how to order the two.
pub fn missing_variable(context: &RunContext, name: &str, when: &str, remedy: &str) -> String {
    match context.capturers.get(name) {
        Some(capturer) => format!(
            "the variable `{name}` has no value yet: {capturer} captures it, and it had not matched {when}; {remedy}"
        ),
        None => format!("the variable `{name}` is captured by no step"),
    }
}

/// How a step waits for a capture of another actor.
pub const ORDER_STEPS: &str =
    "order them: `{ signal = \"NAME\" }` after the capturing step, `{ wait = \"NAME\" }` before this one";

/// The bytes of a `{ template }`: addresses of servers and proxies, the run's
/// variables. The error names the step that captures a missing variable.
pub fn expand(context: &RunContext, template: &Template, user: &str) -> Result<Bytes, String> {
    let addresses = context.addresses.get();
    template
        .expand_bytes(
            &|server| addresses.and_then(|a| a.get(server).copied()),
            &|name| context.variables.get(name),
        )
        .map(Bytes::from)
        .map_err(|name| missing_variable(context, &name, user, ORDER_STEPS))
}

/// DATA with its template made into bytes; other DATA as it is.
pub fn data(context: &RunContext, data: &Data, user: &str) -> Result<Data, String> {
    match data {
        Data::Template(template) => expand(context, template, user).map(Data::Bytes),
        other => Ok(other.clone()),
    }
}

/// A MATCH with its template made into bytes; other matchers as they are.
pub fn matcher(context: &RunContext, matcher: &Match, user: &str) -> Result<Match, String> {
    matcher.resolve(&|template| expand(context, template, user))
}

/// The step's action with every template made into bytes (call it only when
/// [`Action::has_template`] says there is one: the others are cloned for nothing).
pub fn action(context: &RunContext, action: &Action) -> Result<Action, String> {
    const USER: &str = "before this step started";
    let expected = |expected: &Expected| -> Result<Expected, String> {
        Ok(match expected {
            Expected::Data(d) => Expected::Data(data(context, d, USER)?),
            Expected::Match { matcher: m, max } => Expected::Match {
                matcher: matcher(context, m, USER)?,
                max: *max,
            },
        })
    };
    Ok(match action {
        Action::Send {
            data: d,
            chunks,
            delay,
            await_read,
        } => Action::Send {
            data: data(context, d, USER)?,
            chunks: chunks.clone(),
            delay: *delay,
            await_read: *await_read,
        },
        Action::Expect(e) => Action::Expect(expected(e)?),
        Action::Recv { max, expect } => Action::Recv {
            max: *max,
            expect: expect.as_ref().map(expected).transpose()?,
        },
        Action::ExpectLine(m) => Action::ExpectLine(matcher(context, m, USER)?),
        Action::SendFrame {
            framing,
            payload,
            header,
        } => Action::SendFrame {
            framing: framing.clone(),
            payload: data(context, payload, USER)?,
            header: header.clone(),
        },
        Action::ExpectFrame {
            framing,
            payload,
            header,
        } => Action::ExpectFrame {
            framing: framing.clone(),
            payload: matcher(context, payload, USER)?,
            header: header.clone(),
        },
        other => other.clone(),
    })
}
