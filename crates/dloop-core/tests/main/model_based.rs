//! Model-based test of the transition function (issue 13): random loops (states, routes,
//! evaluators, retries, limits) and random action results go through `dloop-core` (`next`,
//! `evaluate`, the fold) and through a small reference interpreter written here from
//! DESIGN.md §3-4; both must visit the same states in the same order and end with the same
//! status, with and without resumes (fold the records so far, continue) at random points.
//!
//! Only shell actions and deterministic evaluators are generated (exit_code, contains,
//! numeric, and states with no action), so the test stays valid as agent semantics grow.
//! `DLOOP_MODEL_CASES` sets the count (default 2,000); a failure names its seed.

use std::collections::HashMap;

use dloop_core::evaluate::{EvalInput, evaluate};
use dloop_core::event::ActionResult;
use dloop_core::state::RunStatus;
use dloop_core::transition::{Decision, next};
use dloop_core::{Event, LoopDef, Record, RunState, Timestamp};
use serde_json::{Value, json};

/// SplitMix64: a tiny, seedable generator, so a failing case reruns from its seed alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &["ok", "bad", "done", "retry"];
const VERDICTS: &[&str] = &["success", "failure", "error"];
const OPERATORS: &[&str] = &["eq", "ne", "lt", "le", "gt", "ge"];

/// A generated loop: its JSON (what `LoopDef` is parsed from) and the seed of its results.
struct Case {
    def: Value,
    results_seed: u64,
}

/// States `s0..sN` and the terminals `done` (success) and `fail` (failure).
fn generate(rng: &mut Rng) -> Case {
    let n = 1 + rng.below(5) as usize;
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let mut targets: Vec<&str> = names.iter().map(String::as_str).collect();
    targets.extend(["done", "fail"]);
    let mut states = serde_json::Map::new();
    for name in &names {
        let mut state = serde_json::Map::new();
        if rng.chance(85) {
            state.insert("shell".into(), json!(format!("step {name}")));
            let evaluator = match rng.below(4) {
                0 => json!({"type": "exit_code", "success_codes": [0, 2]}),
                1 => {
                    json!({"type": "contains", "pattern": rng.pick(WORDS), "negate": rng.chance(30)})
                }
                2 => {
                    json!({"type": "numeric", "operator": rng.pick(OPERATORS), "target": rng.below(10)})
                }
                _ => Value::Null,
            };
            if !evaluator.is_null() {
                state.insert("evaluate".into(), evaluator);
            }
        }
        let mut on = serde_json::Map::new();
        for verdict in VERDICTS {
            if rng.chance(60) {
                on.insert((*verdict).into(), json!(rng.pick(&targets)));
            }
        }
        if rng.chance(30) {
            on.insert("_".into(), json!(rng.pick(&targets)));
        }
        if !on.is_empty() {
            state.insert("on".into(), Value::Object(on));
        }
        if rng.chance(30) {
            state.insert("next".into(), json!(rng.pick(&targets)));
        }
        if rng.chance(35) {
            let mut retries = json!({"max": rng.below(3)});
            if rng.chance(50) {
                retries["on"] = json!([rng.pick(VERDICTS)]);
            }
            if rng.chance(40) {
                retries["on_exhausted"] = json!(rng.pick(&targets));
            }
            state.insert("retries".into(), retries);
        }
        states.insert(name.clone(), Value::Object(state));
    }
    states.insert("done".into(), json!({"terminal": "success"}));
    states.insert("fail".into(), json!({"terminal": "failure"}));
    let mut limits = json!({"max_steps": 1 + rng.below(25)});
    if rng.chance(40) {
        limits["max_edge_visits"] = json!(1 + rng.below(4));
    }
    Case {
        def: json!({"initial": "s0", "states": states, "limits": limits}),
        results_seed: rng.next(),
    }
}

/// The result of the action of `state` at `step`: the same however often it is asked for, so
/// an action re-run after a resume gives what the uninterrupted run got.
fn result_of(seed: u64, state: &str, step: u64) -> (Option<i32>, Option<i32>, String) {
    let mut rng = Rng(seed ^ step.wrapping_mul(0x1000_0001) ^ (state.len() as u64 * 7919));
    for b in state.bytes() {
        rng.0 = rng.0.wrapping_mul(31).wrapping_add(u64::from(b));
    }
    let (code, signal) = match rng.below(10) {
        0..=3 => (Some(0), None),
        4..=5 => (Some(1), None),
        6 => (Some(2), None),
        7 => (Some(127), None),
        8 => (None, Some(9)),
        _ => (Some(3), None),
    };
    let text = match rng.below(3) {
        0 => rng.pick(WORDS).to_owned(),
        _ => format!("{} {}", rng.pick(WORDS), rng.below(10)),
    };
    (code, signal, text)
}

/// The reference interpreter: what DESIGN.md says a run of `def` does, written without core.
/// Returns the states entered, in order, and the final status.
fn reference(def: &Value, seed: u64) -> (Vec<String>, RunStatus) {
    let states = def["states"].as_object().expect("states");
    let max_steps = def["limits"]["max_steps"].as_u64().expect("max_steps");
    let max_edge = def["limits"]["max_edge_visits"].as_u64();
    let (mut current, mut step) = ("s0".to_owned(), 0u64);
    let mut entered = Vec::new();
    let mut retries_used: HashMap<String, u64> = HashMap::new();
    let mut edges: HashMap<(String, String), u64> = HashMap::new();
    loop {
        let state = &states[&current];
        match state["terminal"].as_str() {
            Some(end) => {
                entered.push(current);
                let status = if end == "success" {
                    RunStatus::Completed
                } else {
                    RunStatus::Failed
                };
                return (entered, status);
            }
            None if step >= max_steps => return (entered, RunStatus::Paused),
            None => {}
        }
        step += 1;
        entered.push(current.clone());
        let verdict = if state.get("shell").is_some() {
            let (code, signal, text) = result_of(seed, &current, step);
            reference_verdict(&state["evaluate"], code, signal, &text)
        } else {
            "success"
        };
        let mut target = None;
        if let Some(retries) = state.get("retries") {
            let on = retries["on"][0].as_str().unwrap_or("error");
            if on == verdict {
                let used = retries_used.entry(current.clone()).or_default();
                if *used < retries["max"].as_u64().expect("max") {
                    *used += 1;
                    continue;
                }
                target = retries["on_exhausted"].as_str();
            }
        }
        let route = |key: &str| state["on"][key].as_str();
        let target = target.or_else(|| route(verdict)).or_else(|| {
            (verdict != "error")
                .then(|| route("_").or(state["next"].as_str()))
                .flatten()
        });
        let Some(target) = target else {
            return (entered, RunStatus::Failed);
        };
        let taken = edges
            .entry((current.clone(), target.to_owned()))
            .or_default();
        if max_edge.is_some_and(|max| *taken + 1 > max) {
            return (entered, RunStatus::Failed);
        }
        *taken += 1;
        retries_used.remove(&current);
        current = target.to_owned();
    }
}

fn reference_verdict(
    evaluate: &Value,
    code: Option<i32>,
    signal: Option<i32>,
    text: &str,
) -> &'static str {
    let pass = |ok: bool| if ok { "success" } else { "failure" };
    match evaluate["type"].as_str() {
        Some("contains") => {
            let found = text.contains(evaluate["pattern"].as_str().expect("pattern"));
            pass(found != evaluate["negate"].as_bool().unwrap_or(false))
        }
        Some("numeric") => {
            let Some(value) = text.split(' ').nth(1).and_then(|n| n.parse::<f64>().ok()) else {
                return "error";
            };
            let target = evaluate["target"].as_f64().expect("target");
            pass(match evaluate["operator"].as_str().expect("operator") {
                "eq" => value == target,
                "ne" => value != target,
                "lt" => value < target,
                "le" => value <= target,
                "gt" => value > target,
                _ => value >= target,
            })
        }
        listed => {
            let success: &[i32] = if listed.is_some() { &[0, 2] } else { &[0] };
            match (code, signal) {
                (_, Some(_)) | (None, _) => "error",
                (Some(c), _) if success.contains(&c) => "success",
                (Some(126 | 127), _) => "error",
                _ => "failure",
            }
        }
    }
}

/// Runs `def` through core as the runtime's driver would, resuming (fold the records so far,
/// round-trip the state through JSON, continue) before a decision with `resume_percent`
/// chance. Returns the states entered and the final status.
fn through_core(
    def: &LoopDef,
    seed: u64,
    rng: &mut Rng,
    resume_percent: u64,
) -> (Vec<String>, RunStatus) {
    let mut records: Vec<Record> = Vec::new();
    let mut state = RunState::default();
    let push = |state: &mut RunState, records: &mut Vec<Record>, event: Event| {
        let record = Record {
            seq: records.len() as u64 + 1,
            ts: Timestamp::from_millis(1000 + records.len() as u64),
            event,
        };
        state.apply(&record);
        records.push(record);
    };
    let started = Event::RunStarted {
        run_id: "model-20261121T000000-abcd".into(),
        loop_name: "model".into(),
        definition_sha256: "00".into(),
        initial: "s0".into(),
        context: Default::default(),
        max_steps: def.limits.max_steps(),
        timeout_ms: None,
        delay_ms: None,
    };
    push(&mut state, &mut records, started);
    let status = loop {
        assert!(records.len() < 100_000, "no stop");
        if rng.chance(resume_percent) {
            let folded = RunState::from_records(&records);
            let text = serde_json::to_string(&folded).expect("the state encodes");
            state = serde_json::from_str(&text).expect("the state decodes");
            assert_eq!(state, folded, "the state round-trips through JSON");
        }
        let now = Timestamp::from_millis(1000 + records.len() as u64);
        match next(def, &state, now) {
            Decision::Record(event) | Decision::StartAction { intent: event, .. } => {
                push(&mut state, &mut records, event);
            }
            Decision::RunAction(pending) => {
                let (exit_code, signal, _) = result_of(seed, &pending.state, pending.step);
                let result = ActionResult {
                    exit_code,
                    signal,
                    ..ActionResult::default()
                };
                let event = Event::ActionFinished {
                    state: pending.state,
                    step: pending.step,
                    capture: None,
                    result,
                };
                push(&mut state, &mut records, event);
            }
            Decision::Evaluate => {
                let current = state.current.clone().expect("evaluating in a state");
                let state_def = &def.states[&current];
                let (exit_code, signal, text) = result_of(seed, &current, state.step);
                let acted = state_def.action().is_some();
                let input = EvalInput {
                    exit_code: exit_code.filter(|_| acted),
                    signal: signal.filter(|_| acted),
                    text: if acted { &text } else { "" },
                    ..EvalInput::default()
                };
                let verdict = evaluate(&state_def.evaluator(), &input, None)
                    .expect("no llm evaluator is generated");
                let event = Event::Evaluated {
                    state: current,
                    step: state.step,
                    verdict: verdict.verdict,
                    detail: verdict.detail,
                    metric: verdict.metric,
                    convergence: None,
                };
                push(&mut state, &mut records, event);
            }
            Decision::Stop(status) => break status,
        }
    };
    assert_eq!(
        state,
        RunState::from_records(&records),
        "the fold of every record"
    );
    let entered = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::StateEntered { state, .. } => Some(state.clone()),
            _ => None,
        })
        .collect();
    (entered, status)
}

#[test]
fn transition_function_agrees_with_the_reference_interpreter_with_and_without_resumes() {
    let cases: u64 = std::env::var("DLOOP_MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let mut outcomes: HashMap<&str, u64> = HashMap::new();
    for seed in 0..cases {
        let mut rng = Rng(seed);
        let case = generate(&mut rng);
        let def: LoopDef = serde_json::from_value(case.def.clone())
            .unwrap_or_else(|e| panic!("seed {seed}: the generated loop parses: {e}"));
        let expected = reference(&case.def, case.results_seed);
        let straight = through_core(&def, case.results_seed, &mut rng, 0);
        assert_eq!(straight, expected, "seed {seed}: {:#}", case.def);
        let resumed = through_core(&def, case.results_seed, &mut rng, 15);
        assert_eq!(
            resumed, expected,
            "seed {seed} with resumes: {:#}",
            case.def
        );
        *outcomes.entry(expected.1.as_str()).or_default() += 1;
    }
    // The generator must reach every ending, or the test proves less than it claims.
    for status in ["completed", "failed", "paused"] {
        assert!(
            outcomes.get(status).copied().unwrap_or(0) * 20 >= cases,
            "{status} is rare: {outcomes:?}"
        );
    }
}
