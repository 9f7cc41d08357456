//! Semantic checks of a parsed loop, all problems in one pass, each with a span and help:
//! `initial`, route targets, reachability, unrouted verdicts, terminal states, actions,
//! evaluator fields, `${...}` references (what they name, and in shell actions where they
//! sit), state names (they become file names); and sub-loop cycles across loop files.
//!
//! Every problem is an error (a loop that fails validation does not run). That includes an
//! `on:` key its evaluator can never produce: such a route is dead code, almost always a typo
//! (`sucess`), and the suggestion makes it a one-character fix.

mod refs;
mod subloops;

pub use subloops::check_subloop_cycles;

use std::collections::{HashSet, VecDeque};

use crate::diagnostic::{Diagnostic, Span, suggest};
use crate::interpolate;
use crate::model::{Evaluate, LlmEval, StateDef};
use crate::parse::{ParsedLoop, parse_loop};

/// Parses and validates a loop file: the parsed loop when it could be read, and every problem.
/// The loop is valid when the list is empty.
pub fn check_loop(bytes: &[u8]) -> (Option<ParsedLoop>, Vec<Diagnostic>) {
    match parse_loop(bytes) {
        Ok(parsed) => {
            let diagnostics = validate(&parsed);
            (Some(parsed), diagnostics)
        }
        Err(diagnostics) => (None, diagnostics),
    }
}

/// Every semantic problem of `parsed`, in source order. Empty when the loop is valid.
pub fn validate(parsed: &ParsedLoop) -> Vec<Diagnostic> {
    let mut v = Validator {
        parsed,
        diagnostics: Vec::new(),
    };
    v.check_initial();
    for (name, state) in &parsed.def.states {
        v.check_state(name, state);
    }
    v.check_reachability();
    v.check_references();
    let mut diagnostics = v.diagnostics;
    diagnostics.sort_by_key(|d| d.span.map(|s| s.offset));
    diagnostics
}

struct Validator<'a> {
    parsed: &'a ParsedLoop,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Validator<'a> {
    fn state_names(&self) -> impl Iterator<Item = &'a str> + Clone + use<'a> {
        self.parsed.def.states.keys().map(String::as_str)
    }

    fn has_state(&self, name: &str) -> bool {
        self.parsed.def.states.contains_key(name)
    }

    /// The span at `path`'s key, or the nearest existing parent's, or the top of the file.
    fn key(&self, path: &[&str]) -> Option<Span> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.parsed.spans.key(&path[..n]))
            .or_else(|| self.top())
    }

    /// The span of the value at `path`, else of its key.
    fn value(&self, path: &[&str]) -> Option<Span> {
        self.parsed.spans.value(path).or_else(|| self.key(path))
    }

    fn top(&self) -> Option<Span> {
        let root = self.parsed.spans.root();
        Some(self.parsed.spans.span_at(root.offset, 1))
    }

    fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn states_list(&self) -> String {
        let names: Vec<String> = self.state_names().map(|n| format!("`{n}`")).collect();
        names.join(", ")
    }

    fn check_initial(&mut self) {
        let def = &self.parsed.def;
        if def.states.is_empty() {
            self.push(
                Diagnostic::new(self.key(&["states"]), "the loop has no states")
                    .with_help("add a `states:` mapping with at least one state"),
            );
        }
        match &def.initial {
            None => {
                let help = match def.states.keys().next() {
                    Some(first) => format!(
                        "add `initial: {first}` (or another state: {})",
                        self.states_list()
                    ),
                    None => "add `initial: STATE` and the states under `states:`".to_owned(),
                };
                self.push(
                    Diagnostic::new(self.top(), "missing `initial`: the state a run starts in")
                        .with_help(help),
                );
            }
            Some(initial) if !self.has_state(initial) => {
                let diag = Diagnostic::new(
                    self.value(&["initial"]),
                    format!("`initial` names state `{initial}`, which does not exist"),
                );
                self.push(self.with_state_help(diag, initial));
            }
            Some(_) => {}
        }
    }

    fn with_state_help(&self, diag: Diagnostic, missing: &str) -> Diagnostic {
        match suggest(missing, self.state_names()) {
            Some(s) => diag.with_suggestion(Some(s)),
            None if self.parsed.def.states.is_empty() => diag,
            None => diag.with_help(format!("the states are {}", self.states_list())),
        }
    }

    fn check_state(&mut self, name: &str, state: &StateDef) {
        self.check_state_name(name);
        let actions: Vec<&str> = [
            ("shell", state.shell.is_some()),
            ("prompt", state.prompt.is_some()),
            ("loop", state.sub_loop.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, present)| present.then_some(field))
        .collect();
        if let [first, second, ..] = actions[..] {
            self.push(
                Diagnostic::new(
                    self.key(&["states", name, second]),
                    format!("state `{name}` has two actions, `{first}` and `{second}`"),
                )
                .with_help(format!(
                    "a state runs one action: move `{second}` to a state of its own"
                )),
            );
        }
        if let Some(terminal) = state.terminal {
            let outcome = match terminal {
                crate::model::Terminal::Success => "success",
                crate::model::Terminal::Failure => "failure",
            };
            if let Some(action) = actions.first() {
                self.push(
                    Diagnostic::new(
                        self.key(&["states", name, action]),
                        format!("terminal state `{name}` cannot have an action"),
                    )
                    .with_help(format!(
                        "a terminal state ends the run with {outcome}; run `{action}` in a state that routes here"
                    )),
                );
            }
            for field in ["on", "next"] {
                let present = if field == "on" {
                    state.on.is_some()
                } else {
                    state.next.is_some()
                };
                if present {
                    self.push(
                        Diagnostic::new(
                            self.key(&["states", name, field]),
                            format!("terminal state `{name}` cannot have routes"),
                        )
                        .with_help(format!("remove `{field}`: a terminal state ends the run")),
                    );
                }
            }
            return;
        }
        self.check_targets(name, state);
        if actions.is_empty() && state.on.is_none() && state.next.is_none() {
            self.push(
                Diagnostic::new(
                    self.key(&["states", name]),
                    format!("state `{name}` is a dead end: no action, no routes, not terminal"),
                )
                .with_help("add `next: STATE`, or `terminal: success` or `terminal: failure`"),
            );
            return;
        }
        let evaluator = state.evaluator();
        self.check_route_keys(name, state, &evaluator);
        self.check_unrouted(name, state, &evaluator);
        self.check_evaluator(name, &evaluator);
    }

    /// State names keep to the characters loop names use. dloop no longer puts a state name in
    /// any path (outputs go to the run's output stream, long scripts are named by step), but
    /// older versions did (`outputs/<seq>-<state>.out`), a state named `../x` or `a/b` is never
    /// what an author meant, and names show in terminals and diagrams. Checked here, not in
    /// parsing, so a definition stored by an older version still loads on resume.
    fn check_state_name(&mut self, name: &str) {
        let Some(problem) = state_name_problem(name) else {
            return;
        };
        self.push(
            Diagnostic::new(
                self.key(&["states", name]),
                format!("state name `{}` {problem}", name.escape_debug()),
            )
            .with_help(STATE_NAME_RULE),
        );
    }

    fn check_targets(&mut self, name: &str, state: &StateDef) {
        let mut targets: Vec<(Vec<&str>, String, &str)> = Vec::new();
        if let Some(on) = &state.on {
            for (verdict, target) in on {
                let what = format!("route `{verdict}` of state `{name}`");
                targets.push((vec!["states", name, "on", verdict], what, target));
            }
        }
        if let Some(next) = &state.next {
            targets.push((
                vec!["states", name, "next"],
                format!("`next` of state `{name}`"),
                next,
            ));
        }
        if let Some(exhausted) = state
            .retries
            .as_ref()
            .and_then(|r| r.on_exhausted.as_deref())
        {
            let what = format!("`retries.on_exhausted` of state `{name}`");
            targets.push((
                vec!["states", name, "retries", "on_exhausted"],
                what,
                exhausted,
            ));
        }
        for (path, what, target) in targets {
            if !self.has_state(target) {
                let diag = Diagnostic::new(
                    self.value(&path),
                    format!("{what} goes to state `{target}`, which does not exist"),
                );
                self.push(self.with_state_help(diag, target));
            }
        }
    }

    fn check_route_keys(&mut self, name: &str, state: &StateDef, evaluator: &Evaluate) {
        let (Some(on), Some(verdicts)) = (&state.on, evaluator.verdicts()) else {
            return;
        };
        for verdict in on.keys() {
            if verdict == crate::model::DEFAULT_ROUTE || verdicts.contains(&verdict.as_str()) {
                continue;
            }
            // A prompt state whose agent stays rate limited past its ladder routes this
            // verdict when it names it; never required (unrouted, the run pauses).
            if state.prompt.is_some() && verdict == crate::transition::agent::RATE_LIMITED_VERDICT {
                continue;
            }
            // Any state may route a spent budget (crate::budget); never required.
            if verdict == crate::budget::BUDGET_EXCEEDED {
                continue;
            }
            let help = match suggest(verdict, verdicts.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "{} gives {}",
                    describe_evaluator(evaluator),
                    or_list(verdicts)
                ),
            };
            self.push(
                Diagnostic::new(
                    self.key(&["states", name, "on", verdict]),
                    format!("state `{name}` never gets verdict `{verdict}`"),
                )
                .with_help(help),
            );
        }
    }

    fn check_unrouted(&mut self, name: &str, state: &StateDef, evaluator: &Evaluate) {
        let at = if state.on.is_some() {
            vec!["states", name, "on"]
        } else {
            vec!["states", name]
        };
        let Some(verdicts) = evaluator.verdicts() else {
            let has_default =
                state.next.is_some() || state.on.as_ref().is_some_and(|on| on.contains_key("_"));
            if !has_default {
                self.push(
                    Diagnostic::new(
                        self.key(&at),
                        format!("state `{name}` uses `classify`, which can give any verdict, but has no default route"),
                    )
                    .with_help("add `_: STATE` under `on:` (or `next: STATE`) for verdicts without a route"),
                );
            }
            return;
        };
        let exhausted_route = state.retries.as_ref().filter(|r| r.on_exhausted.is_some());
        let missing: Vec<&str> = verdicts
            .iter()
            .copied()
            .filter(|v| *v != "error" && state.route(v).is_none())
            .filter(|v| !exhausted_route.is_some_and(|r| r.applies_to(v)))
            .collect();
        if missing.is_empty() {
            return;
        }
        let (noun, listed) = if missing.len() == 1 {
            ("verdict", format!("`{}`", missing[0]))
        } else {
            ("verdicts", and_list(&missing))
        };
        self.push(
            Diagnostic::new(
                self.key(&at),
                format!("state `{name}` has no route for {noun} {listed}"),
            )
            .with_help(format!(
                "{} can give {}: route each under `on:`, or add a default `_: STATE`",
                describe_evaluator(evaluator),
                listed
            )),
        );
    }

    fn check_evaluator(&mut self, name: &str, evaluator: &Evaluate) {
        match evaluator {
            Evaluate::Contains(contains) => {
                if let Err(error) = regex::Regex::new(&contains.pattern) {
                    let text = error.to_string();
                    let reason = text
                        .lines()
                        .find_map(|l| l.strip_prefix("error: "))
                        .unwrap_or(&text)
                        .to_owned();
                    self.push(
                        Diagnostic::new(
                            self.value(&["states", name, "evaluate", "pattern"]),
                            format!("invalid regex in `pattern`: {reason}"),
                        )
                        .with_help("patterns use Rust regex syntax: https://docs.rs/regex"),
                    );
                }
            }
            Evaluate::Llm(llm) => {
                if let Some(min) = llm.min_confidence.filter(|m| !(0.0..=1.0).contains(m)) {
                    self.push(
                        Diagnostic::new(
                            self.value(&["states", name, "evaluate", "min_confidence"]),
                            format!("`min_confidence` must be between 0 and 1, got {min}"),
                        )
                        .with_help("write a fraction, such as 0.7"),
                    );
                }
            }
            _ => {}
        }
    }

    fn check_reachability(&mut self) {
        let def = &self.parsed.def;
        let has_terminal = def.states.values().any(|s| s.terminal.is_some());
        let Some(initial) = def.initial.as_deref().filter(|i| self.has_state(i)) else {
            if !has_terminal && !def.states.is_empty() {
                self.push(
                    Diagnostic::new(self.key(&["states"]), "the loop has no terminal state")
                        .with_help("add a state with `terminal: success` and route to it"),
                );
            }
            return;
        };
        let mut seen: HashSet<&str> = HashSet::from([initial]);
        let mut queue = VecDeque::from([initial]);
        while let Some(name) = queue.pop_front() {
            let Some(state) = def.states.get(name) else {
                continue;
            };
            if state.terminal.is_some() {
                continue;
            }
            for (_, target) in state.edges() {
                if self.has_state(target) && seen.insert(target) {
                    queue.push_back(target);
                }
            }
        }
        for name in self.state_names() {
            if !seen.contains(name) {
                self.push(
                    Diagnostic::new(
                        self.key(&["states", name]),
                        format!("state `{name}` is unreachable from `initial` state `{initial}`"),
                    )
                    .with_help("route to it from another state, or remove it"),
                );
            }
        }
        if !seen
            .iter()
            .any(|n| def.states.get(*n).is_some_and(|s| s.terminal.is_some()))
        {
            let help = if has_terminal {
                "route to a terminal state from the states `initial` leads to"
            } else {
                "add a state with `terminal: success` and route to it"
            };
            self.push(
                Diagnostic::new(
                    self.value(&["initial"]),
                    format!("no terminal state can be reached from `initial` state `{initial}`"),
                )
                .with_help(help),
            );
        }
    }

    fn check_references(&mut self) {
        let parsed: &'a ParsedLoop = self.parsed;
        let def = &parsed.def;
        let mut context: Vec<&str> = def.context.keys().map(String::as_str).collect();
        context.extend(def.required.iter().map(String::as_str));
        context.push(def.input_key());
        let captures = def
            .states
            .values()
            .filter_map(|s| s.capture.as_deref())
            .collect();
        let known = refs::Known { context, captures };
        for (name, state) in &def.states {
            let mut texts: Vec<(Vec<&str>, &str)> = Vec::new();
            if let Some(shell) = &state.shell {
                texts.push((vec!["states", name, "shell"], shell));
                self.check_shell_contexts(&["states", name, "shell"], shell);
            }
            if let Some(prompt) = &state.prompt {
                texts.push((vec!["states", name, "prompt"], prompt));
            }
            if let Some(evaluate) = &state.evaluate {
                if let Some(source) = evaluate.source() {
                    texts.push((vec!["states", name, "evaluate", "source"], source));
                }
                if let Evaluate::Llm(LlmEval {
                    prompt: Some(prompt),
                    ..
                }) = evaluate
                {
                    texts.push((vec!["states", name, "evaluate", "prompt"], prompt));
                }
            }
            for (key, value) in &state.with {
                texts.push((vec!["states", name, "with", key], &value.0));
            }
            for (path, text) in texts {
                self.check_text(&path, text, &known);
            }
        }
    }

    /// Checks the references of the string at `path`, pointing at each inside the source.
    fn check_text(&mut self, path: &[&str], text: &str, known: &refs::Known<'_>) {
        let mut locator = Locator::new(self, path, text);
        for reference in refs::references(text) {
            let Some((message, help)) = refs::check(&reference, known) else {
                continue;
            };
            let span = locator.find(reference.text);
            self.push(Diagnostic::new(span, message).with_help(help));
        }
    }

    /// Refuses references of the shell action at `path` that sit where no value can be
    /// inserted safely (quoted heredocs, arithmetic, ...): see `interpolate::shell`.
    fn check_shell_contexts(&mut self, path: &[&str], text: &str) {
        let mut locator = Locator::new(self, path, text);
        for refusal in interpolate::shell_refusals(text) {
            let span = locator.find(&text[refusal.offset..refusal.offset + refusal.len]);
            self.push(Diagnostic::new(span, refusal.message).with_help(refusal.help));
        }
    }
}

/// Finds references of one string value in the loop's source, in order.
struct Locator<'a> {
    spans: &'a crate::parse::SpanIndex,
    value_span: Option<Span>,
    cursor: usize,
    /// How far past the cursor a reference is searched for: bounded so that many references
    /// cannot make the search quadratic.
    window: usize,
}

impl<'a> Locator<'a> {
    fn new(validator: &Validator<'a>, path: &[&str], text: &str) -> Self {
        let value_span = validator.value(path);
        Locator {
            spans: &validator.parsed.spans,
            value_span,
            cursor: value_span.map_or(0, |s| s.offset),
            window: text.len() * 2 + 256,
        }
    }

    /// The span of `written` in the source after the previous one found. The reference as
    /// written is usually there; a quoted string with escapes may differ, and then the whole
    /// value is the span.
    fn find(&mut self, written: &str) -> Option<Span> {
        let source = self.spans.source();
        let mut window_end = self.cursor.saturating_add(self.window).min(source.len());
        while !source.is_char_boundary(window_end) {
            window_end -= 1;
        }
        let found = source
            .get(self.cursor..window_end)
            .and_then(|rest| rest.find(written));
        match found {
            Some(at) => {
                self.cursor += at + written.len();
                Some(
                    self.spans
                        .span_at(self.cursor - written.len(), written.len()),
                )
            }
            None => self.value_span,
        }
    }
}

/// What state names may be.
const STATE_NAME_RULE: &str = "state names use ASCII letters, digits, `_`, `.` and `-`, start \
                               with a letter, digit or `_`, have no `..` and at most 64 characters";

/// Why `name` cannot be a state name, or `None` when it can.
fn state_name_problem(name: &str) -> Option<String> {
    let Some(first) = name.chars().next() else {
        return Some("is empty".into());
    };
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Some(format!("contains {c:?}"));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Some(format!("starts with {first:?}"));
    }
    if name.contains("..") {
        return Some("contains `..`".into());
    }
    if name.len() > 64 {
        return Some(format!("is {} characters long", name.len()));
    }
    None
}

fn describe_evaluator(evaluator: &Evaluate) -> String {
    match evaluator {
        Evaluate::Always => "a state with no action".to_owned(),
        other => format!("evaluator `{}`", other.type_name()),
    }
}

fn or_list(items: &[&str]) -> String {
    join(items, "or")
}

fn and_list(items: &[&str]) -> String {
    join(items, "and")
}

fn join(items: &[&str], word: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {word} {last}", rest.join(", ")),
    }
}
