//! `[proxies.NAME]`: fault proxies, their targets and their faults.
//!
//! Proxies are read in three passes: each table on its own (so a proxy may point
//! at a proxy declared after it), then the chains of `to` (protocols inherited
//! along them, loops refused), then each proxy's faults against its protocol.

use super::*;

/// A proxy table read on its own, before its chain is known.
struct RawProxy<'n> {
    name: String,
    location: Location,
    key_span: Range<usize>,
    proto: Option<(Proto, Range<usize>)>,
    to: Option<(Target, Range<usize>)>,
    seed: Option<u64>,
    bind: SocketAddr,
    faults: Option<&'n Node<'n>>,
}

impl Loader<'_> {
    pub(super) fn proxies(&mut self, node: &Node, servers: &[ServerSpec]) -> Vec<ProxySpec> {
        let entries = match &node.kind {
            NodeKind::Table(entries) => entries,
            _ => {
                self.push(
                    type_error(node, "proxies", "a table of proxies")
                        .hint("declare each proxy as `[proxies.NAME]` with `to = \"SERVER\"`"),
                );
                return Vec::new();
            }
        };
        self.declared_proxies = entries.iter().map(|e| e.key.to_string()).collect();
        let raw: Vec<RawProxy> = entries
            .iter()
            .filter_map(|entry| self.raw_proxy(entry, servers))
            .collect();
        let protos: HashMap<String, Proto> = self
            .proxy_protos(&raw, servers)
            .into_iter()
            .map(|(name, proto)| (name.to_owned(), proto))
            .collect();
        raw.into_iter()
            .filter_map(|proxy| {
                let proto = *protos.get(&proxy.name)?;
                let faults = match proxy.faults {
                    Some(node) => self.faults(node, proto)?,
                    None => Vec::new(),
                };
                let (to, _) = proxy.to?;
                Some(ProxySpec {
                    name: proxy.name,
                    location: proxy.location,
                    proto,
                    to,
                    seed: proxy.seed,
                    bind: proxy.bind,
                    faults,
                })
            })
            .collect()
    }

    fn raw_proxy<'n>(
        &mut self,
        entry: &'n Entry<'n>,
        servers: &[ServerSpec],
    ) -> Option<RawProxy<'n>> {
        let name = entry.key.to_string();
        let context = format!("proxy `{name}`");
        let mut fields = self.ok(Fields::of(&entry.value, &context))?;
        if self.declared_servers.contains(&name) {
            self.push(
                Diagnostic::new(
                    entry.key_span.clone(),
                    format!("a server and a proxy are both named `{name}`"),
                )
                .label("rename one of them")
                .hint("`connect` and `to` name servers and proxies alike, so names must differ"),
            );
        }
        let proto = fields.get("proto").and_then(|node| {
            let proto = self.proto_of(node)?;
            Some((proto, node.span.clone()))
        });
        let to = match fields.get("to") {
            Some(node) => self.proxy_target(node, &name, servers),
            None => {
                self.push(
                    Diagnostic::new(entry.key_span.clone(), format!("{context} has no `to`"))
                        .label("where should it forward?")
                        .hint("add `to = \"SERVER_NAME\"`, another proxy's name, or `to = \"127.0.0.1:PORT\"`"),
                );
                None
            }
        };
        let seed = fields.get("seed").and_then(|node| match &node.kind {
            NodeKind::Int(seed) if *seed >= 0 => Some(*seed as u64),
            NodeKind::Int(seed) => {
                self.push(
                    Diagnostic::new(
                        node.span.clone(),
                        format!("`seed` is {seed}, a negative number"),
                    )
                    .label("a seed is a whole number from 0 up"),
                );
                None
            }
            _ => {
                self.push(type_error(node, "seed", "an integer").hint("e.g. `seed = 7`"));
                None
            }
        });
        let bind = match fields.get("bind") {
            Some(node) => self.ok(loopback_addr(node, "bind"))?,
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let faults = fields.get("faults");
        let unknown = fields.unknown_keys(&context, PROXY_KEYS);
        self.diagnostics.extend(unknown);
        Some(RawProxy {
            name,
            location: self.location(&entry.key_span),
            key_span: entry.key_span.clone(),
            proto,
            to,
            seed,
            bind,
            faults,
        })
    }

    /// A `proto` value, for servers, clients and proxies alike.
    pub(super) fn proto_of(&mut self, node: &Node) -> Option<Proto> {
        let name = self.ok(string(node, "proto"))?;
        match Proto::from_str(&name) {
            Ok(proto) => Some(proto),
            Err(_) => {
                self.push(
                    Diagnostic::new(node.span.clone(), format!("unknown proto `{name}`"))
                        .label("expected \"tcp\" or \"udp\""),
                );
                None
            }
        }
    }

    fn proxy_target(
        &mut self,
        node: &Node,
        name: &str,
        servers: &[ServerSpec],
    ) -> Option<(Target, Range<usize>)> {
        let text = self.ok(string(node, "to"))?;
        let span = node.span.clone();
        if text == name {
            self.push(
                Diagnostic::new(span, format!("proxy `{name}` forwards to itself"))
                    .label("a loop: its connections would never reach a server")
                    .hint("`to` names a server, another proxy, or a \"host:port\""),
            );
            return None;
        }
        if servers.iter().any(|s| s.name == text) {
            return Some((Target::Server(text), span));
        }
        if self.declared_proxies.contains(&text) {
            return Some((Target::Proxy(text), span));
        }
        if self.declared_servers.contains(&text) {
            // That server has errors of its own, already reported.
            return None;
        }
        if text.contains(':') {
            let addr = self.ok(loopback_addr(node, "to"))?;
            return Some((Target::Address(addr), span));
        }
        let mut names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        let mut proxies: Vec<&str> = self.declared_proxies.iter().map(String::as_str).collect();
        proxies.sort_unstable();
        names.extend(proxies.into_iter().filter(|p| *p != name));
        let mut d = Diagnostic::new(span, format!("no server or proxy is named `{text}`"))
            .label("`to` names a server or another proxy of this file, or a \"host:port\"");
        if let Some(best) = did_you_mean(&text, &names) {
            d = d.hint(format!("did you mean `{best}`?"));
        }
        if !names.is_empty() {
            d = d.hint(format!(
                "servers and proxies in this file: {}",
                names.join(", ")
            ));
        }
        self.push(d);
        None
    }

    /// Each proxy's protocol: its own `proto`, else its target's (along a chain of
    /// proxies), else TCP. Refuses loops of proxies and a `proto` that differs from
    /// the target's.
    fn proxy_protos<'r>(
        &mut self,
        raw: &'r [RawProxy],
        servers: &[ServerSpec],
    ) -> HashMap<&'r str, Proto> {
        let by_name: HashMap<&str, &RawProxy> = raw.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut protos = HashMap::new();
        let mut reported_loop: HashSet<&str> = HashSet::new();
        for proxy in raw {
            // Walk the chain: the first proto found decides, a repeat is a loop.
            let mut seen: Vec<&str> = vec![proxy.name.as_str()];
            let mut current = proxy;
            let mut inherited = None;
            let mut broken = false;
            loop {
                match &current.to {
                    Some((Target::Proxy(next), _)) => {
                        if seen.contains(&next.as_str()) {
                            if seen[0] == next.as_str()
                                && !seen.iter().any(|p| reported_loop.contains(p))
                            {
                                let span = proxy
                                    .to
                                    .as_ref()
                                    .map_or(proxy.key_span.clone(), |t| t.1.clone());
                                let chain: Vec<&str> =
                                    seen.iter().copied().chain([next.as_str()]).collect();
                                self.push(
                                    Diagnostic::new(span, format!("proxies forward to each other in a loop: {}", chain.join(" -> ")))
                                        .label("this `to` closes the loop")
                                        .hint("the last proxy of a chain must forward to a server or a \"host:port\""),
                                );
                                reported_loop.extend(seen.iter().copied());
                            }
                            broken = true;
                            break;
                        }
                        let Some(next_proxy) = by_name.get(next.as_str()) else {
                            // Declared but invalid: its own error says why.
                            broken = true;
                            break;
                        };
                        seen.push(next.as_str());
                        if inherited.is_none() {
                            inherited = next_proxy.proto.as_ref().map(|p| p.0);
                        }
                        current = next_proxy;
                    }
                    Some((Target::Server(server), _)) => {
                        if inherited.is_none() {
                            inherited = servers.iter().find(|s| &s.name == server).map(|s| s.proto);
                        }
                        break;
                    }
                    Some((Target::Address(_), _)) => break,
                    None => {
                        broken = current.name != proxy.name || proxy.to.is_none();
                        break;
                    }
                }
            }
            if broken {
                continue;
            }
            let proto = match (&proxy.proto, inherited) {
                (Some((own, span)), Some(target)) if *own != target => {
                    self.push(
                        Diagnostic::new(
                            span.clone(),
                            format!(
                                "proxy `{}` speaks {} to a {} target",
                                proxy.name,
                                own.name(),
                                target.name()
                            ),
                        )
                        .label("does not match its target's `proto`")
                        .hint("leave `proto` out: a proxy speaks its target's protocol"),
                    );
                    continue;
                }
                (Some((own, _)), _) => *own,
                (None, Some(target)) => target,
                (None, None) => Proto::Tcp,
            };
            protos.insert(proxy.name.as_str(), proto);
        }
        protos
    }

    fn faults(&mut self, node: &Node, proto: Proto) -> Option<Vec<FaultSpec>> {
        let NodeKind::Array(items) = &node.kind else {
            self.push(type_error(node, "faults", "an array of fault tables").hint(
                "e.g. `faults = [ { slice = 1, delay = \"1ms\" }, { latency = \"20ms\" } ]`",
            ));
            return None;
        };
        let before = self.diagnostics.len();
        let faults: Vec<FaultSpec> = items
            .iter()
            .filter_map(|item| {
                let fault = fault(item, proto);
                self.ok(fault)
            })
            .collect();
        (self.diagnostics.len() == before).then_some(faults)
    }
}

/// One fault table, checked against the proxy's protocol. Also the parser of
/// `wirecheck proxy --fault SPEC` (see [`fault_from_text`]).
pub(super) fn fault(node: &Node, proto: Proto) -> Check<FaultSpec> {
    let mut fields = Fields::of(node, "a fault").map_err(|d| {
        d.hint("each fault is an inline table, e.g. `{ slice = 1, delay = \"1ms\" }`")
    })?;
    let valid_here = faults::faults_for(proto);
    let mut named: Vec<&str> = fields
        .entries
        .iter()
        .map(|e| e.key)
        .filter(|key| faults::FAULT_NAMES.contains(key))
        .collect();
    // `jitter` beside `latency` is latency's option, not a second fault.
    if named.contains(&"latency") {
        named.retain(|key| *key != "jitter");
    }
    let main = match named.as_slice() {
        [] => {
            let unknown = fields
                .entries
                .iter()
                .find(|e| !FAULT_COMMON_KEYS.contains(&e.key));
            let mut d = match unknown {
                Some(entry) => Diagnostic::new(
                    entry.key_span.clone(),
                    format!("unknown fault `{}`", entry.key),
                )
                .label("not a fault of wirecheck"),
                None => Diagnostic::new(node.span.clone(), "this fault does not say what it does")
                    .label("needs a fault key"),
            };
            if let Some(best) = unknown.and_then(|e| did_you_mean(e.key, valid_here)) {
                d = d.hint(format!("did you mean `{best}`?"));
            }
            return Err(d.hint(format!(
                "{} faults: {}",
                proto.name().to_uppercase(),
                valid_here.join(", ")
            )));
        }
        [one] => *one,
        [first, second, ..] => {
            return Err(Diagnostic::new(
                fields.key_span(second),
                format!("one fault table has both `{first}` and `{second}`"),
            )
            .label("a second fault")
            .hint("write each fault as its own table: `faults = [ { ... }, { ... } ]`; they apply in order"));
        }
    };
    if !valid_here.contains(&main) {
        let other = if proto == Proto::Tcp { "UDP" } else { "TCP" };
        return Err(Diagnostic::new(
            fields.key_span(main),
            format!(
                "`{main}` does not apply to a {} proxy",
                proto.name().to_uppercase()
            ),
        )
        .label(format!("a {other} fault"))
        .hint(format!(
            "{} faults: {}",
            proto.name().to_uppercase(),
            valid_here.join(", ")
        )));
    }
    let value = fields.get(main).expect("the key was found above");
    let mut valid: Vec<&str> = vec![main];
    valid.extend(FAULT_COMMON_KEYS);
    let kind = match main {
        "latency" => {
            let delay = duration(value, "latency")?;
            valid.push("jitter");
            let jitter = match fields.get("jitter") {
                Some(node) => duration(node, "jitter")?,
                None => Duration::ZERO,
            };
            FaultKind::Latency { delay, jitter }
        }
        "jitter" => FaultKind::Latency {
            delay: Duration::ZERO,
            jitter: duration(value, "jitter")?,
        },
        "bandwidth" => {
            valid.push("shared");
            let shared = match fields.get("shared") {
                Some(node) => boolean(node, "shared")?,
                None => false,
            };
            FaultKind::Bandwidth {
                bytes_per_second: size(value, "bandwidth", 1, faults::LARGEST_COUNT)?,
                shared,
            }
        }
        "slice" => {
            valid.push("delay");
            let (min, max) = match &value.kind {
                NodeKind::Array(items) => match items {
                    [min, max] => {
                        let min = size(min, "slice", 1, faults::LARGEST_SLICE)? as usize;
                        let max_size = size(max, "slice", 1, faults::LARGEST_SLICE)? as usize;
                        if max_size < min {
                            return Err(Diagnostic::new(
                                value.span.clone(),
                                format!("`slice` is [{min}, {max_size}]: MIN is larger than MAX"),
                            )
                            .label("write [MIN, MAX] with MIN <= MAX"));
                        }
                        (min, max_size)
                    }
                    _ => {
                        return Err(Diagnostic::new(
                            value.span.clone(),
                            "`slice` takes a size or [MIN, MAX]",
                        )
                        .label(format!("an array of {} items", items.len()))
                        .hint("e.g. `slice = 1` or `slice = [1, 16]`"))
                    }
                },
                _ => {
                    let n = size(value, "slice", 1, faults::LARGEST_SLICE)? as usize;
                    (n, n)
                }
            };
            let delay = match fields.get("delay") {
                Some(node) => duration(node, "delay")?,
                None => Duration::ZERO,
            };
            FaultKind::Slice { min, max, delay }
        }
        "coalesce" => {
            valid.push("window");
            let window = match fields.get("window") {
                Some(node) => duration(node, "window")?,
                None => faults::DEFAULT_COALESCE_WINDOW,
            };
            FaultKind::Coalesce {
                bytes: size(value, "coalesce", 1, MAX_COALESCE_BYTES as u64)? as usize,
                window,
            }
        }
        "reset_after" => {
            FaultKind::ResetAfter(size(value, "reset_after", 0, faults::LARGEST_COUNT)?)
        }
        "close_after" => {
            FaultKind::CloseAfter(size(value, "close_after", 0, faults::LARGEST_COUNT)?)
        }
        "blackhole" => {
            must_be_true(value, "blackhole")?;
            FaultKind::Blackhole
        }
        "slow_close" => FaultKind::SlowClose(duration(value, "slow_close")?),
        "drop" => FaultKind::Drop(probability(value, "drop")?),
        "duplicate" => FaultKind::Duplicate(probability(value, "duplicate")?),
        "corrupt" => FaultKind::Corrupt(probability(value, "corrupt")?),
        "reorder" => {
            valid.push("window");
            let window = match fields.get("window") {
                Some(node) => duration(node, "window")?,
                None => faults::DEFAULT_REORDER_WINDOW,
            };
            FaultKind::Reorder {
                probability: probability(value, "reorder")?,
                window,
            }
        }
        "truncate" => FaultKind::Truncate(size(value, "truncate", 0, 65_535)? as usize),
        other => unreachable!("`{other}` is in FAULT_NAMES but has no parser"),
    };
    let mut spec = FaultSpec::new(kind);
    if let Some(node) = fields.get("direction") {
        let name = string(node, "direction")?;
        spec.direction = Direction::from_name(&name).ok_or_else(|| {
            Diagnostic::new(node.span.clone(), format!("unknown direction `{name}`"))
                .label("expected \"up\", \"down\" or \"both\"")
                .hint("\"up\" is client to server, \"down\" server to client")
        })?;
    }
    if let Some(node) = fields.get("connections") {
        let NodeKind::Array(items) = &node.kind else {
            return Err(
                type_error(node, "connections", "an array of connection numbers").hint(
                    "e.g. `connections = [1, 3]`: the first and third connection the proxy accepts",
                ),
            );
        };
        let numbers = items
            .iter()
            .map(|item| size(item, "connections", 1, faults::LARGEST_COUNT))
            .collect::<Check<Vec<u64>>>()?;
        spec.connections = Some(numbers);
    }
    if let Some(node) = fields.get("probability") {
        spec.probability = probability(node, "probability")?;
    }
    if let Some(d) = fields
        .unknown_keys(&format!("fault `{main}`"), &valid)
        .into_iter()
        .next()
    {
        return Err(d);
    }
    Ok(spec)
}

/// A byte count or other size: an integer in `min..=max`, with an error that says
/// a size cannot be negative.
fn size(node: &Node, key: &str, min: u64, max: u64) -> Check<u64> {
    match &node.kind {
        NodeKind::Int(i) if *i < 0 => Err(Diagnostic::new(
            node.span.clone(),
            format!("`{key}` is {i}: a size cannot be negative"),
        )
        .label(format!("must be between {min} and {max}"))),
        _ => super::count(node, key, min as usize, max as usize).map(|n| n as u64),
    }
}

/// A probability: a number from 0 to 1.
fn probability(node: &Node, key: &str) -> Check<f64> {
    let value = match &node.kind {
        NodeKind::Float(f) => *f,
        NodeKind::Int(i) => *i as f64,
        _ => return Err(type_error(node, key, "a number from 0 to 1").hint("e.g. `0.25`")),
    };
    if !(0.0..=1.0).contains(&value) {
        return Err(Diagnostic::new(
            node.span.clone(),
            format!("`{key}` is {value}, outside 0..1"),
        )
        .label("a probability is from 0 (never) to 1 (always)"));
    }
    Ok(value)
}

/// Parses one `--fault` of `wirecheck proxy`: `slice=1,delay=1ms` or the TOML
/// inline-table form `{ slice = 1, delay = "1ms" }`. Errors come back rendered,
/// pointing into the text the way scenario errors point into a file.
pub fn fault_from_text(text: &str, proto: Proto) -> Result<FaultSpec, String> {
    let table = spec_to_toml(text);
    let source = format!("fault = {table}\n");
    let path = Path::new("--fault");
    let invalid = |diagnostics| {
        LoadError::Invalid {
            path: path.to_owned(),
            source: Arc::from(source.as_str()),
            diagnostics,
        }
        .render()
    };
    let arena = tree::Arena::new();
    let root = tree::parse(&source, &arena).map_err(|error| {
        invalid(vec![Diagnostic::new(error.span, "this is not a fault")
            .label(error.message.lines().next().unwrap_or("invalid syntax").to_owned())
            .hint("write KEY=VALUE pairs separated by commas: `slice=1,delay=1ms`, `latency=20ms,jitter=5ms`, `drop=0.1`")])
    })?;
    let NodeKind::Table(entries) = &root.kind else {
        return Err(invalid(Vec::new()));
    };
    let node = &entries.first().ok_or_else(|| invalid(Vec::new()))?.value;
    fault(node, proto).map_err(|d| invalid(vec![d]))
}

/// `slice=1,delay=1ms` as a TOML inline table: values that are TOML numbers,
/// booleans or arrays stay as they are; anything else becomes a string. Text that
/// already is a table is kept.
fn spec_to_toml(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        return trimmed.to_owned();
    }
    let mut pairs = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in trimmed.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                pairs.push(&trimmed[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pairs.push(&trimmed[start..]);
    let items: Vec<String> = pairs
        .into_iter()
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => {
                let value = value.trim();
                let literal = value.parse::<i64>().is_ok()
                    || value.parse::<f64>().is_ok() && value.contains('.')
                    || value == "true"
                    || value == "false"
                    || value.starts_with('[')
                    || value.starts_with('"');
                if literal {
                    format!("{} = {value}", key.trim())
                } else {
                    format!(
                        "{} = \"{}\"",
                        key.trim(),
                        value.replace('\\', "\\\\").replace('"', "\\\"")
                    )
                }
            }
            // A bare flag (`blackhole`) means `= true`.
            None => format!("{} = true", pair.trim()),
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_specs_become_inline_tables() {
        assert_eq!(
            spec_to_toml("slice=1,delay=1ms"),
            "{ slice = 1, delay = \"1ms\" }"
        );
        assert_eq!(spec_to_toml("slice=[1,5]"), "{ slice = [1,5] }");
        assert_eq!(spec_to_toml("drop=0.25"), "{ drop = 0.25 }");
        assert_eq!(spec_to_toml("blackhole"), "{ blackhole = true }");
        assert_eq!(
            fault_from_text("latency=20ms,jitter=5ms,direction=down", Proto::Tcp).unwrap(),
            FaultSpec {
                kind: FaultKind::Latency {
                    delay: Duration::from_millis(20),
                    jitter: Duration::from_millis(5)
                },
                direction: Direction::Down,
                connections: None,
                probability: 1.0,
            }
        );
    }

    #[test]
    fn bad_command_line_specs_say_why() {
        let error = fault_from_text("coalesce=10", Proto::Udp).unwrap_err();
        assert!(
            error.contains("`coalesce` does not apply to a UDP proxy"),
            "{error}"
        );
        let error = fault_from_text("slise=1", Proto::Tcp).unwrap_err();
        assert!(
            error.contains("unknown fault `slise`") && error.contains("did you mean `slice`"),
            "{error}"
        );
        let error = fault_from_text("drop=1.5", Proto::Udp).unwrap_err();
        assert!(error.contains("outside 0..1"), "{error}");
    }
}
