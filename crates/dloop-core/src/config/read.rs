//! Reading `.loops/config.yaml` into an [`AgentConfig`]: the spanned YAML tree, each profile
//! read alone so one bad profile does not hide the others, then resolved over its base.
//!
//! Invariant: [`parse_config`] returns either a config whose every profile is usable (see the
//! parent module's invariants) or every problem found, each with its `file:line:col` span.

use indexmap::IndexMap;
use serde::Deserialize;

use super::*;
use crate::diagnostic::{Diagnostic, Span, suggest};
use crate::parse::{Node, NodeKind, from_entry, from_node, read_tree};

/// The raw file, as serde reads it (each field read alone for error reporting).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    defaults: Defaults,
    /// Read profile by profile in `read_runners`; declared so that `runners` is a known key
    /// (and suggested for a misspelt one).
    #[serde(default)]
    #[allow(dead_code)]
    runners: IndexMap<String, Profile>,
    /// Where runs are kept: a `postgres://` URL (absent: the file store of `.loops/.dloop/`).
    #[serde(default)]
    store: Option<String>,
}

/// Reads `.loops/config.yaml`.
///
/// An empty file (or one with only comments) is the built-ins.
///
/// # Errors
/// Every problem found, each with its span: a file over 1 MiB or not UTF-8, not YAML,
/// duplicate keys, unknown fields (with a suggestion), wrong types, a new profile without
/// `base`, a built-in's profile with another base, a `command` profile without `command`, a
/// `prompt:` on an agent CLI, a permission mode its CLI does not take, a rate-limit pattern
/// that is not a regex, a default runner that names no profile.
pub fn parse_config(bytes: &[u8]) -> Result<AgentConfig, Vec<Diagnostic>> {
    let Some(root) = read_tree(bytes)? else {
        return Ok(AgentConfig::default());
    };
    let entries = match &root.kind {
        NodeKind::Map(entries) => entries,
        _ if root.is_null() => return Ok(AgentConfig::default()),
        _ => {
            return Err(vec![
                Diagnostic::new(
                    Some(root.span),
                    format!(
                        "a config file must be a mapping of fields, found {}",
                        root.describe()
                    ),
                )
                .with_help("write `runners:` and `defaults:` mappings"),
            ]);
        }
    };
    let mut diagnostics = Vec::new();
    let mut config = AgentConfig::default();
    let mut default_runner: Option<(String, Span)> = None;
    for entry in entries {
        match entry.0.as_str() {
            Some("runners") => read_runners(&entry.1, &mut config, &mut diagnostics),
            Some("defaults") => match from_entry::<ConfigFile>(entry, root.span) {
                Ok(file) => {
                    let span = entry
                        .1
                        .entry("runner")
                        .map_or(entry.1.span, |(_, v)| v.span);
                    default_runner = file.defaults.runner.map(|r| (r, span));
                }
                Err(d) => diagnostics.push(d),
            },
            Some("store") => match from_entry::<ConfigFile>(entry, root.span) {
                Ok(file) => config.store = file.store,
                Err(d) => diagnostics.push(d),
            },
            _ => {
                if let Err(d) = from_entry::<ConfigFile>(entry, root.span) {
                    diagnostics.push(d);
                }
            }
        }
    }
    if let Some((name, span)) = default_runner {
        if config.profiles.contains_key(&name) {
            config.default_runner = name;
        } else {
            diagnostics.push(
                Diagnostic::new(Some(span), format!("unknown runner profile `{name}`"))
                    .with_suggestion(suggest(&name, config.profiles.keys().map(String::as_str))),
            );
        }
    }
    if diagnostics.is_empty() {
        Ok(config)
    } else {
        diagnostics.sort_by_key(|d| d.span.map(|s| s.offset));
        Err(diagnostics)
    }
}

/// Reads each profile on its own, so each profile's errors are reported.
fn read_runners(node: &Node, config: &mut AgentConfig, diagnostics: &mut Vec<Diagnostic>) {
    let entries = match &node.kind {
        NodeKind::Map(entries) => entries,
        _ if node.is_null() => return,
        _ => {
            diagnostics.push(Diagnostic::new(
                Some(node.span),
                format!(
                    "`runners` must be a mapping of profile names to profiles, found {}",
                    node.describe()
                ),
            ));
            return;
        }
    };
    for (key, value) in entries {
        let Some(name) = key.as_str() else {
            diagnostics.push(Diagnostic::new(
                Some(key.span),
                format!("a profile name must be a string, found {}", key.describe()),
            ));
            continue;
        };
        let profile = if value.is_null() {
            Profile::default()
        } else {
            match read_profile(value) {
                Ok(profile) => profile,
                Err(errors) => {
                    diagnostics.extend(errors);
                    continue;
                }
            }
        };
        match resolve(name, key.span, &profile, value) {
            Ok(resolved) => {
                config.profiles.insert(name.to_owned(), resolved);
            }
            Err(errors) => diagnostics.extend(errors),
        }
    }
}

/// Reads one profile; on error, reads each of its fields alone to report them all.
fn read_profile(node: &Node) -> Result<Profile, Vec<Diagnostic>> {
    let whole = match from_node::<Profile>(node) {
        Ok(profile) => return Ok(profile),
        Err(e) => e,
    };
    let NodeKind::Map(entries) = &node.kind else {
        return Err(vec![whole]);
    };
    let errors: Vec<Diagnostic> = entries
        .iter()
        .filter_map(|entry| from_entry::<Profile>(entry, node.span).err())
        .collect();
    Err(if errors.is_empty() {
        vec![whole]
    } else {
        errors
    })
}

/// Fills a profile's defaults from its base's built-in, checking what only makes sense
/// together (base and name, prompt mode and base, permission mode and base, patterns).
fn resolve(
    name: &str,
    name_span: Span,
    profile: &Profile,
    node: &Node,
) -> Result<ResolvedProfile, Vec<Diagnostic>> {
    let at = |field: &str| node.entry(field).map_or(name_span, |(_, v)| v.span);
    let mut errors = Vec::new();
    let builtin = Base::from_name(name);
    let base = match (builtin, profile.base) {
        (Some(b), None) => b,
        (Some(b), Some(given)) if b == given => b,
        (Some(b), Some(given)) => {
            errors.push(
                Diagnostic::new(
                    Some(at("base")),
                    format!(
                        "profile `{name}` is the built-in `{}` profile: its base cannot be `{}`",
                        b.as_str(),
                        given.as_str()
                    ),
                )
                .with_help("give the profile another name to base it on another CLI"),
            );
            return Err(errors);
        }
        (None, Some(given)) => given,
        (None, None) => {
            return Err(vec![
                Diagnostic::new(
                    Some(name_span),
                    format!("profile `{name}` needs `base:` (it is not a built-in profile)"),
                )
                .with_help("add `base: claude`, `codex`, `gemini`, `opencode` or `command`"),
            ]);
        }
    };
    let mut resolved = ResolvedProfile::builtin(base);
    resolved.name = name.to_owned();
    if let Some(command) = &profile.command {
        if command.is_empty() || command[0].is_empty() {
            errors.push(Diagnostic::new(
                Some(at("command")),
                "`command` needs at least the program",
            ));
        }
        resolved.command.clone_from(command);
    } else if base == Base::Command {
        errors.push(
            Diagnostic::new(
                Some(name_span),
                format!("profile `{name}` runs any command: it needs `command:`"),
            )
            .with_help("for example `command: [my-agent, --prompt, \"{prompt}\"]`"),
        );
    }
    match (base, profile.prompt) {
        (Base::Command, Some(mode)) => resolved.prompt = mode,
        (Base::Command, None) => {
            let has = |p: &str| resolved.command.iter().any(|a| a.contains(p));
            resolved.prompt = if has("{prompt}") {
                PromptMode::Arg
            } else if has("{prompt_file}") {
                PromptMode::File
            } else {
                PromptMode::Stdin
            };
        }
        (_, Some(_)) => errors.push(
            Diagnostic::new(
                Some(at("prompt")),
                format!(
                    "`prompt:` applies to `command` profiles; {} always reads the prompt on stdin",
                    base.as_str()
                ),
            )
            .with_help("remove `prompt:`"),
        ),
        (_, None) => {}
    }
    if let Some(mode) = &profile.permission_mode {
        let modes = base.permission_modes();
        if modes.contains(&mode.as_str()) {
            resolved.permission_mode = Some(mode.clone());
        } else if modes.is_empty() {
            errors.push(
                Diagnostic::new(
                    Some(at("permission_mode")),
                    "`permission_mode` applies to the agent CLIs, not to `command` profiles",
                )
                .with_help("pass the program's own flags in `command:` or `args:`"),
            );
        } else {
            let help = suggest(mode, modes.iter().copied()).map_or_else(
                || format!("{} takes: {}", base.as_str(), modes.join(", ")),
                |s| format!("did you mean `{s}`?"),
            );
            errors.push(
                Diagnostic::new(
                    Some(at("permission_mode")),
                    format!("unknown permission mode `{mode}` for {}", base.as_str()),
                )
                .with_help(help),
            );
        }
    }
    if let Some(patterns) = &profile.rate_limit_patterns {
        for (i, pattern) in patterns.iter().enumerate() {
            if let Err(e) = regex::RegexBuilder::new(pattern)
                .case_insensitive(true)
                .build()
            {
                let span = node
                    .entry("rate_limit_patterns")
                    .and_then(|(_, v)| v.item(i))
                    .map_or(at("rate_limit_patterns"), |n| n.span);
                errors.push(Diagnostic::new(
                    Some(span),
                    format!(
                        "not a regular expression: {}",
                        e.to_string().lines().last().unwrap_or("invalid")
                    ),
                ));
            }
        }
        resolved.rate_limit_patterns.clone_from(patterns);
    }
    if let Some(model) = &profile.model {
        resolved.model = Some(model.clone());
    }
    if let Some(args) = &profile.args {
        resolved.args.clone_from(args);
    }
    for (k, v) in &profile.env {
        resolved.env.retain(|(old, _)| old != k);
        resolved.env.push((k.clone(), v.clone()));
    }
    resolved.timeout = profile.timeout.or(resolved.timeout);
    resolved.idle_timeout = profile.idle_timeout.or(resolved.idle_timeout);
    resolved.max_turns = profile.max_turns.or(resolved.max_turns);
    if let Some(policy) = &profile.rate_limit {
        resolved.rate_limit = policy.clone();
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(errors)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        match parse_config(src.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(diags) => diags.iter().map(Diagnostic::located).collect(),
        }
    }

    fn parse(src: &str) -> AgentConfig {
        parse_config(src.as_bytes()).unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn an_empty_file_is_the_builtins_with_safe_permission_defaults() {
        for src in ["", "# nothing\n", "~\n"] {
            let config = parse(src);
            assert_eq!(config.default_runner(), "claude");
            let names: Vec<_> = config.profiles().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["claude", "codex", "gemini", "opencode", "command"]);
        }
        let config = AgentConfig::default();
        let mode = |n: &str| config.profile(n).and_then(|p| p.permission_mode.clone());
        assert_eq!(mode("claude").as_deref(), Some("acceptEdits"));
        assert_eq!(mode("codex").as_deref(), Some("workspace-write"));
        assert_eq!(mode("gemini").as_deref(), Some("auto_edit"));
        assert_eq!(mode("opencode").as_deref(), Some("default"));
        assert_eq!(mode("command"), None);
        assert_eq!(config.profile("codex").expect("codex").command, ["codex"]);
    }

    #[test]
    fn a_builtin_is_changed_and_a_new_profile_starts_from_its_base() {
        let config = parse(
            "defaults:\n  runner: fast\nrunners:\n  claude:\n    model: opus\n    env: { IS_SANDBOX: 1 }\n    permission_mode: bypassPermissions\n  fast:\n    base: claude\n    model: haiku\n    max_turns: 20\n    timeout: 30m\n    rate_limit: { waits: [1m] }\n    rate_limit_patterns: ['overloaded_error']\n",
        );
        assert_eq!(config.default_runner(), "fast");
        let claude = config.profile("claude").expect("claude");
        assert_eq!(claude.model.as_deref(), Some("opus"));
        assert_eq!(claude.env, [("IS_SANDBOX".to_owned(), "1".to_owned())]);
        assert_eq!(claude.permission_mode.as_deref(), Some("bypassPermissions"));
        let fast = config.profile("fast").expect("fast");
        assert_eq!(fast.base, Base::Claude);
        assert_eq!(fast.command, ["claude"]);
        assert_eq!(fast.permission_mode.as_deref(), Some("acceptEdits"));
        assert_eq!(fast.max_turns, Some(20));
        assert_eq!(fast.timeout.map(HumanDuration::as_millis), Some(1_800_000));
        assert_eq!(fast.rate_limit.waits.len(), 1);
        assert_eq!(fast.rate_limit_patterns, ["overloaded_error"]);
    }

    #[test]
    fn command_profiles_pick_the_prompt_mode_from_their_placeholders() {
        let config = parse(
            "runners:\n  a: { base: command, command: [x, '{prompt}'] }\n  b: { base: command, command: [x, --file, '{prompt_file}'] }\n  c: { base: command, command: [x] }\n  d: { base: command, command: [x], prompt: arg }\n",
        );
        let mode = |n: &str| config.profile(n).expect(n).prompt;
        assert_eq!(mode("a"), PromptMode::Arg);
        assert_eq!(mode("b"), PromptMode::File);
        assert_eq!(mode("c"), PromptMode::Stdin);
        assert_eq!(mode("d"), PromptMode::Arg);
    }

    #[test]
    fn unknown_keys_and_bad_values_point_at_their_place() {
        assert_eq!(
            errors("runners:\n  claude:\n    modle: opus\n    max_turns: many\n"),
            [
                "3:5 unknown field `modle`",
                "4:16 expected a whole number from 0, found the string `many`"
            ]
        );
        assert_eq!(errors("runner:\n"), ["1:1 unknown field `runner`"]);
        assert_eq!(
            errors("runners:\n  x: { base: claud }\n"),
            ["2:14 unknown value `claud`"]
        );
    }

    #[test]
    fn profiles_that_do_not_make_sense_are_refused() {
        assert_eq!(
            errors("runners:\n  mine:\n    model: x\n"),
            ["2:3 profile `mine` needs `base:` (it is not a built-in profile)"]
        );
        assert_eq!(
            errors("runners:\n  claude: { base: codex }\n"),
            ["2:19 profile `claude` is the built-in `claude` profile: its base cannot be `codex`"]
        );
        assert_eq!(
            errors("runners:\n  run: { base: command }\n"),
            ["2:3 profile `run` runs any command: it needs `command:`"]
        );
        assert_eq!(
            errors("runners:\n  gemini: { prompt: arg }\n"),
            [
                "2:21 `prompt:` applies to `command` profiles; gemini always reads the prompt on stdin"
            ]
        );
        assert_eq!(
            errors("runners:\n  codex: { permission_mode: yolo }\n"),
            ["2:29 unknown permission mode `yolo` for codex"]
        );
        assert_eq!(
            errors("runners:\n  claude: { rate_limit_patterns: [ok, 'a(b'] }\n"),
            ["2:39 not a regular expression: error: unclosed group"]
        );
        assert_eq!(
            errors("defaults: { runner: cluade }\n"),
            ["1:21 unknown runner profile `cluade`"]
        );
    }

    #[test]
    fn the_default_runner_may_name_a_new_profile_defined_after_it() {
        let config = parse("defaults: { runner: mine }\nrunners:\n  mine: { base: gemini }\n");
        assert_eq!(config.default_runner(), "mine");
    }
}
