//! The built-in loop templates of `dloop new --template T` and `dloop init --template T`: loop
//! files under `templates/loops/`, compiled into the binary. Each holds `__NAME__` where the new
//! loop's name goes; a test validates every one and runs it against the fake agents.

/// One built-in template.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Template {
    /// The name given to `--template`.
    pub(crate) name: &'static str,
    /// One line for `dloop new --list`.
    pub(crate) summary: &'static str,
    /// How to run a loop made from it.
    pub(crate) usage: &'static str,
    /// The loop file, with `__NAME__` for the loop's name.
    text: &'static str,
}

/// The placeholder replaced by the loop's name.
const NAME_PLACEHOLDER: &str = "__NAME__";

/// Every built-in template, in the order `--list` shows them.
pub(crate) const TEMPLATES: &[Template] = &[
    Template {
        name: "fix-tests",
        summary: "run the tests; while they fail, an agent fixes the code",
        usage: "dloop run NAME [\"TEST COMMAND\"]   (default: cargo test)",
        text: include_str!("../templates/loops/fix-tests.yaml"),
    },
    Template {
        name: "fix-lint",
        summary: "run a linter or type checker; while it complains, an agent fixes the code",
        usage: "dloop run NAME [\"CHECK COMMAND\"]  (default: cargo clippy ... -D warnings)",
        text: include_str!("../templates/loops/fix-lint.yaml"),
    },
    Template {
        name: "implement-issue",
        summary: "an agent implements an issue, the tests run, a review prompt approves or sends it back",
        usage: "dloop run NAME \"ISSUE TEXT\" [-c test_cmd=\"make test\"]",
        text: include_str!("../templates/loops/implement-issue.yaml"),
    },
    Template {
        name: "refine-doc",
        summary: "an agent improves a document until a judge prompt answers APPROVED",
        usage: "dloop run NAME PATH [-c goal=\"...\"]",
        text: include_str!("../templates/loops/refine-doc.yaml"),
    },
    Template {
        name: "shell-retry",
        summary: "run a shell command until it succeeds, pausing between attempts (no agent)",
        usage: "dloop run NAME \"COMMAND\" [-c pause_s=10]",
        text: include_str!("../templates/loops/shell-retry.yaml"),
    },
];

/// The template called `name`.
pub(crate) fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// The names of all templates, comma-separated (for error hints).
pub(crate) fn names() -> String {
    TEMPLATES
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Template {
    /// The loop file for a loop called `loop_name`.
    pub(crate) fn render(&self, loop_name: &str) -> String {
        self.text.replace(NAME_PLACEHOLDER, loop_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_validates_under_any_name() {
        for t in TEMPLATES {
            let text = t.render("my-loop");
            assert!(!text.contains(NAME_PLACEHOLDER), "{}", t.name);
            let (parsed, problems) = dloop_core::validate::check_loop(text.as_bytes());
            assert!(problems.is_empty(), "{}: {problems:?}", t.name);
            let parsed = parsed.expect("parsed");
            assert_eq!(parsed.def.name.as_deref(), Some("my-loop"));
        }
    }
}
