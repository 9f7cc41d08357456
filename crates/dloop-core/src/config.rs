//! `.loops/config.yaml`: the runner profiles of `prompt:` states, from YAML to
//! [`AgentConfig`], with a `file:line:col` [`Diagnostic`](crate::diagnostic::Diagnostic) for
//! every problem (the loop files' spanned YAML and serde machinery, so unknown keys get the same
//! "did you mean"). The types are here; reading them is in `read.rs`.
//!
//! ```yaml
//! store: postgres://db.internal/dloop   # optional: keep runs in PostgreSQL (default: files)
//! defaults:
//!   runner: claude            # the profile of prompt states that name none (default: claude)
//! runners:
//!   claude:                   # a built-in's name: fields given replace the built-in's
//!     model: opus
//!     permission_mode: bypassPermissions
//!     env: { IS_SANDBOX: "1" }
//!   fast:                     # a new name needs `base`
//!     base: claude
//!     model: haiku
//!     max_turns: 20
//!   aider:
//!     base: command
//!     command: [aider, --yes, --message-file, "{prompt_file}"]
//!     prompt: file
//! ```
//!
//! Invariants: every profile of an [`AgentConfig`] has a known base, a non-empty command, a
//! permission mode its CLI accepts, and rate-limit patterns that compile; the five built-ins
//! are always present (the config can change them, not remove them); the default runner names
//! one of the profiles. See [`CONFIG_DOC`] for the user-facing description of each field.

mod read;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::duration::HumanDuration;
use crate::model::RateLimitPolicy;

pub use self::read::parse_config;

/// Where a project's config is, relative to its root.
pub const CONFIG_FILE: &str = ".loops/config.yaml";

/// The profile `prompt:` states use when neither they nor the config name one.
pub const DEFAULT_RUNNER: &str = "claude";

/// The user-facing description of the config file (for the README and `dloop help`).
pub const CONFIG_DOC: &str = r#"`.loops/config.yaml` sets the runner profiles of `prompt:` states.

  defaults:
    runner: NAME            profile of prompt states that name none (default: claude)
  runners:
    NAME:                   a built-in (claude, codex, gemini, opencode, command) to change it,
                            or a new name with `base:`
      base: claude|codex|gemini|opencode|command
      command: [PROGRAM, ARG...]   the program (built-ins: `claude`, `codex`, `gemini`,
                            `opencode`); in a `command` profile, `{prompt}` in an argument
                            inserts the prompt and `{prompt_file}` the path of a 0600 file
                            holding it
      prompt: stdin|arg|file   command profiles only: how the prompt is given (default: `arg`
                            if an argument has `{prompt}`, `file` if one has `{prompt_file}`,
                            else stdin); `arg`/`file` without the placeholder append it. The
                            built-in CLIs always read the prompt on stdin (no argv limit).
      model: ID             the CLI's model flag (a state's `model:` wins)
      args: [ARG...]        extra arguments (a state's `args:` come after)
      permission_mode: M    what the agent may do unattended (below)
      env: {NAME: VALUE}    extra environment
      timeout: 30m          wall clock per invocation (a state's `timeout:` wins)
      idle_timeout: 10m     longest silence (a state's `idle_timeout:` wins)
      max_turns: N          dloop ends the agent after N turns (a state's `max_turns:` wins)
      rate_limit: {waits: [30s, 2m, 10m, 30m], max_wait: 6h, total: 24h}
      rate_limit_patterns: [REGEX...]   more texts that mean "rate limited" (case-insensitive),
                            applied only to a failed invocation's error and stderr

Permission modes and their defaults (safe: the agent edits files in the project but the CLI's
own guard decides about commands):
  claude    default | acceptEdits (default) | plan | bypassPermissions | dontAsk | auto
            (`--permission-mode`). bypassPermissions lets it run any command; as root the CLI
            refuses it unless the environment has IS_SANDBOX=1 (`env: {IS_SANDBOX: "1"}`).
  codex     read-only | workspace-write (default) | danger-full-access | bypass
            (`--sandbox`, or `--dangerously-bypass-approvals-and-sandbox` for bypass); dloop
            also passes `--skip-git-repo-check`, since the project was chosen by whoever
            started the loop.
  gemini    default | auto_edit (default) | yolo | plan (`--approval-mode`); headless
            `default` denies every tool that would ask, so loops that run commands need yolo.
  opencode  default (default: every permission that would ask is rejected) | auto (everything
            not explicitly denied is allowed, through OPENCODE_PERMISSION='{"*":"allow"}', which
            every version reads).
"#;

/// The CLI a profile drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// Claude Code, `claude -p --output-format stream-json --verbose`.
    Claude,
    /// Codex CLI, `codex exec --json`.
    Codex,
    /// Gemini CLI, `gemini --output-format stream-json`.
    Gemini,
    /// OpenCode, `opencode run --format json`.
    Opencode,
    /// Any program: plain-text output, outcome from the exit status.
    Command,
}

impl Base {
    /// Every base, in the order built-in profiles are listed.
    pub const ALL: [Base; 5] = [
        Base::Claude,
        Base::Codex,
        Base::Gemini,
        Base::Opencode,
        Base::Command,
    ];

    /// The base's name, which is also its built-in profile's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Base::Claude => "claude",
            Base::Codex => "codex",
            Base::Gemini => "gemini",
            Base::Opencode => "opencode",
            Base::Command => "command",
        }
    }

    /// The base named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Base> {
        Base::ALL.into_iter().find(|b| b.as_str() == name)
    }

    /// The permission modes the CLI takes, the default first (none for `command`).
    pub fn permission_modes(self) -> &'static [&'static str] {
        match self {
            Base::Claude => &[
                "acceptEdits",
                "default",
                "plan",
                "bypassPermissions",
                "dontAsk",
                "auto",
            ],
            Base::Codex => &[
                "workspace-write",
                "read-only",
                "danger-full-access",
                "bypass",
            ],
            Base::Gemini => &["auto_edit", "default", "yolo", "plan"],
            Base::Opencode => &["default", "auto"],
            Base::Command => &[],
        }
    }
}

/// How a `command` profile gives the prompt to its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptMode {
    /// On stdin (no size limit).
    Stdin,
    /// In the arguments: `{prompt}` replaced, else appended (Linux refuses one argument over
    /// 128 KiB: such a prompt fails to start).
    Arg,
    /// In a 0600 file in the run's scratch folder: `{prompt_file}` replaced by its path, else
    /// the path appended.
    File,
}

/// The `defaults:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// The profile of `prompt:` states that name none.
    #[serde(default)]
    pub runner: Option<String>,
}

/// One entry of `runners:`, as written (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The CLI it drives; required for a name that is not a built-in's.
    #[serde(default)]
    pub base: Option<Base>,
    /// The program and its arguments.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How a `command` profile gives the prompt.
    #[serde(default)]
    pub prompt: Option<PromptMode>,
    /// The model flag's value.
    #[serde(default)]
    pub model: Option<String>,
    /// Extra arguments.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// What the agent may do unattended ([`Base::permission_modes`]).
    #[serde(default)]
    pub permission_mode: Option<String>,
    /// Extra environment, merged over the built-in's.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Wall clock per invocation.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Longest silence per invocation.
    #[serde(default)]
    pub idle_timeout: Option<HumanDuration>,
    /// Most turns per invocation (dloop enforces it).
    #[serde(default)]
    pub max_turns: Option<u64>,
    /// The rate-limit backoff ladder.
    #[serde(default)]
    pub rate_limit: Option<RateLimitPolicy>,
    /// More rate-limit texts (regexes, case-insensitive).
    #[serde(default)]
    pub rate_limit_patterns: Option<Vec<String>>,
}

/// A profile with every default filled in: what a runner runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedProfile {
    /// The profile's name.
    pub name: String,
    /// The CLI it drives.
    pub base: Base,
    /// The program and its fixed arguments (never empty).
    pub command: Vec<String>,
    /// How the prompt is given (always [`PromptMode::Stdin`] for the four agent CLIs).
    pub prompt: PromptMode,
    /// The model, unless a state names one.
    pub model: Option<String>,
    /// Extra arguments, before a state's.
    pub args: Vec<String>,
    /// The permission mode (`None` only for `command`).
    pub permission_mode: Option<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Wall clock per invocation, unless the state sets one.
    pub timeout: Option<HumanDuration>,
    /// Longest silence per invocation, unless the state sets one.
    pub idle_timeout: Option<HumanDuration>,
    /// Most turns per invocation, unless the state sets it.
    pub max_turns: Option<u64>,
    /// The rate-limit ladder, unless the state sets one.
    pub rate_limit: RateLimitPolicy,
    /// More rate-limit texts (valid regexes), besides the built-in ones.
    pub rate_limit_patterns: Vec<String>,
}

impl ResolvedProfile {
    /// The built-in profile of `base`.
    pub fn builtin(base: Base) -> Self {
        let command = match base {
            Base::Command => Vec::new(),
            other => vec![other.as_str().to_owned()],
        };
        Self {
            name: base.as_str().to_owned(),
            base,
            command,
            prompt: PromptMode::Stdin,
            model: None,
            args: Vec::new(),
            permission_mode: base.permission_modes().first().map(|m| (*m).to_owned()),
            env: Vec::new(),
            timeout: None,
            idle_timeout: None,
            max_turns: None,
            rate_limit: RateLimitPolicy::default(),
            rate_limit_patterns: Vec::new(),
        }
    }
}

/// The runner profiles of a project: the built-ins, changed and extended by its config.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    default_runner: String,
    profiles: IndexMap<String, ResolvedProfile>,
    store: Option<String>,
}

impl Default for AgentConfig {
    /// The built-in profiles only (a project without a config file).
    fn default() -> Self {
        Self {
            default_runner: DEFAULT_RUNNER.to_owned(),
            profiles: Base::ALL
                .into_iter()
                .map(|b| (b.as_str().to_owned(), ResolvedProfile::builtin(b)))
                .collect(),
            store: None,
        }
    }
}

impl AgentConfig {
    /// The top-level `store:` URL (`postgres://...`), when the project keeps its runs in a
    /// database; `--store` and `DLOOP_STORE` override it.
    pub fn store(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// The profile of `prompt:` states that name none.
    pub fn default_runner(&self) -> &str {
        &self.default_runner
    }

    /// The profile called `name`.
    pub fn profile(&self, name: &str) -> Option<&ResolvedProfile> {
        self.profiles.get(name)
    }

    /// Every profile: the built-ins first, then the config's new ones in file order.
    pub fn profiles(&self) -> impl Iterator<Item = &ResolvedProfile> {
        self.profiles.values()
    }
}
