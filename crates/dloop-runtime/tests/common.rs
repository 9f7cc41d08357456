//! Helpers: a temp project with a runtime folder, loops from YAML text.

use std::path::{Path, PathBuf};

use dloop_core::LoopDef;
use dloop_runtime::driver::SessionOptions;
use dloop_runtime::observer::Silent;
use dloop_runtime::runs::{RunEnd, RunOptions, StartRequest, start_run};
use dloop_store::FileStore;

/// A temporary project: `root/` with `.loops/.dloop/` as the store.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> FileStore {
        FileStore::new(self.root().join(".loops/.dloop"))
    }

    pub fn options(&self) -> SessionOptions {
        let mut options = SessionOptions::new(self.root().to_path_buf());
        options.kill_grace = std::time::Duration::from_millis(200);
        options
    }

    pub fn side_file(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// Parses `yaml` and runs it to the end of its first session.
    pub fn run(&self, yaml: &str) -> RunEnd {
        self.run_with(yaml, self.options())
    }

    /// A file in run `run_id`'s scratch folder (`${run.dir}`).
    pub fn work_file(&self, run_id: &str, name: &str) -> PathBuf {
        self.store()
            .local_run_dir(run_id)
            .expect("run dir")
            .join("work")
            .join(name)
    }

    /// Like [`Project::run`], with these session options.
    pub fn run_with(&self, yaml: &str, options: SessionOptions) -> RunEnd {
        self.run_full(yaml, options, RunOptions::default())
    }

    /// Like [`Project::run_with`], with `dloop run`'s recorded options (`--no-llm`, budgets).
    pub fn run_full(&self, yaml: &str, options: SessionOptions, run: RunOptions) -> RunEnd {
        let def = parse(yaml);
        let request = StartRequest {
            def: &def,
            definition_text: yaml,
            loop_name: "test-loop",
            loop_path: None,
            context: dloop_core::model::context_strings(&def.context),
            argv: vec!["dloop".into(), "run".into()],
            max_steps: def.limits.max_steps(),
            timeout_ms: def.limits.timeout.map(|d| d.as_millis()),
            delay_ms: def.delay.map(|d| d.as_millis()),
            scope: None,
            options: run,
        };
        let store = self.store();
        let local_dir = |id: &str| store.local_run_dir(id);
        start_run(&store, &local_dir, &request, options, &mut Silent).expect("run starts")
    }
}

pub fn parse(yaml: &str) -> LoopDef {
    match dloop_core::parse::parse_loop(yaml.as_bytes()) {
        Ok(parsed) => parsed.def,
        Err(diags) => panic!("loop does not parse: {diags:?}"),
    }
}
