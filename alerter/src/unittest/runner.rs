//! One test group, as promtool 2.42's `testGroup.test` runs it: input samples are loaded
//! lazily (only those at or before each evaluation time, so queries never see input beyond
//! the last evaluation), every group is evaluated at `0, interval, …` up to the largest
//! `eval_time`, alerts are checked after the evaluation at or just before their `eval_time`,
//! and PromQL tests run at the end over everything written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use super::file::{AlertTest, PromqlTest, TestGroup};
use super::gofmt::{float_e, go_duration, labels_string, model_duration, quote};
use super::series::{Pairs, parse_metric, parse_values};
use super::{UnitTestOptions, read_text};
use crate::eval::{AlertState, EvalOptions, GroupState, eval_group, query_message};
use crate::promql::{Engine, EngineOptions, Labels, MemStore, Point, Sample, Value, is_stale};
use crate::rules::{Rule, RuleGroup, parse_rule_file};

/// promtool's test engine holds at most this many samples per query (`promql.NewLazyLoader`).
const TEST_ENGINE_MAX_SAMPLES: usize = 10_000;

/// Input series with a cursor (next sample to load), per series.
type Input = Vec<(Labels, Vec<Point>, usize)>;

/// A test group ready to run.
struct Prepared {
    input: Input,
    groups: Vec<RuleGroup>,
    /// The largest `eval_time` (ms).
    max_t: i64,
}

/// The file-level settings every test group shares.
pub(crate) struct Suite<'a> {
    pub rule_files: &'a [PathBuf],
    pub eval_interval_ms: i64,
    pub group_order: &'a BTreeMap<String, usize>,
    pub opts: &'a UnitTestOptions,
}

/// The storage of one test group, with a TSDB appender's rules: a sample at the newest
/// timestamp of its series is a no-op if identical and refused otherwise; older is refused.
#[derive(Default)]
struct TestStore {
    mem: MemStore,
    last: HashMap<Labels, (i64, u64)>,
}

impl TestStore {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), &'static str> {
        match self.last.get(labels) {
            Some(&(lt, _)) if t < lt => return Err("out of order sample"),
            Some(&(lt, bits)) if t == lt => {
                return if bits == v.to_bits() {
                    Ok(())
                } else {
                    Err("duplicate sample for timestamp")
                };
            }
            _ => {}
        }
        self.mem
            .append(labels.clone(), t, v)
            .map_err(|_| "out of order sample")?;
        self.last.insert(labels.clone(), (t, v.to_bits()));
        Ok(())
    }
}

impl Suite<'_> {
    /// Runs one test group; returns promtool's failure messages (empty: passed).
    pub(crate) fn run(&self, tg: &TestGroup) -> Vec<String> {
        let Prepared {
            mut input,
            groups,
            max_t,
        } = match self.prepare(tg) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let engine = Engine::new(EngineOptions {
            max_samples: TEST_ENGINE_MAX_SAMPLES,
            subquery_step_default_ms: self.eval_interval_ms,
            ..EngineOptions::default()
        });
        let eval_opts = EvalOptions {
            external_labels: tg.external_labels.clone(),
            external_url: tg.external_url.clone(),
            default_interval_ms: tg.interval.map_or(0, |d| d.0),
            resend_delay_ms: 0,
            ..EvalOptions::default()
        };
        let mut store = TestStore::default();
        let mut states: Vec<GroupState> = groups.iter().map(GroupState::new).collect();
        let alert_times: BTreeSet<i64> = tg.alert_rule_test.iter().map(|a| a.eval_time.0).collect();
        let mut pending_checks = alert_times.into_iter().peekable();
        let mut errs = Vec::new();
        let mut ts = 0;
        while ts <= max_t {
            load_until(&mut input, &mut store, ts);
            let mut eval_errs = Vec::new();
            for (g, state) in groups.iter().zip(states.iter_mut()) {
                eval_errs.extend(eval_one(&engine, g, state, &mut store, ts, &eval_opts));
            }
            if !eval_errs.is_empty() {
                errs.extend(eval_errs);
                return errs;
            }
            while let Some(&t) = pending_checks.peek() {
                if !(ts <= t && t < ts + self.eval_interval_ms) {
                    break;
                }
                pending_checks.next();
                for case in tg.alert_rule_test.iter().filter(|a| a.eval_time.0 == t) {
                    if let Some(e) = check_alerts(tg, case, &groups, &states) {
                        errs.push(e);
                    }
                }
            }
            ts += self.eval_interval_ms;
        }
        for case in &tg.promql_expr_test {
            if let Some(e) = check_promql(&engine, &store.mem, case) {
                errs.push(e);
            }
        }
        errs
    }

    /// Everything promtool checks before evaluating: input series, rule files, alert test
    /// names, and (ours) the number of evaluation steps.
    fn prepare(&self, tg: &TestGroup) -> Result<Prepared, Vec<String>> {
        let interval_ms = tg.interval.map_or(0, |d| d.0);
        let input = self.load_input(tg, interval_ms).map_err(|e| vec![e])?;
        let groups = self.load_groups()?;
        if let Some(a) = tg.alert_rule_test.iter().find(|a| a.alertname.is_empty()) {
            let in_group = if tg.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", tg.name)
            };
            return Err(vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                model_duration(a.eval_time.0)
            )]);
        }
        let max_t = tg
            .alert_rule_test
            .iter()
            .map(|a| a.eval_time.0)
            .chain(tg.promql_expr_test.iter().map(|p| p.eval_time.0))
            .max()
            .unwrap_or(0);
        let steps = max_t / self.eval_interval_ms + 1;
        if steps as u64 > self.opts.max_eval_steps {
            return Err(vec![format!(
                "test group needs {steps} evaluations (eval_time {} at evaluation_interval {}); the limit is {}",
                model_duration(max_t),
                model_duration(self.eval_interval_ms),
                self.opts.max_eval_steps
            )]);
        }
        Ok(Prepared {
            input,
            groups,
            max_t,
        })
    }

    /// The input series, expanded, with their samples at `i * interval`.
    fn load_input(&self, tg: &TestGroup, interval_ms: i64) -> Result<Input, String> {
        let mut budget = self.opts.max_input_samples;
        let mut defs: BTreeMap<Labels, Vec<Point>> = BTreeMap::new();
        for s in &tg.input_series {
            let pairs =
                parse_metric(&s.series).map_err(|e| format!("series {:?}: {e}", s.series))?;
            let values = parse_values(&s.values, &mut budget).map_err(|e| {
                format!(
                    "{e} ({} samples per test group; see UnitTestOptions::max_input_samples)",
                    self.opts.max_input_samples
                )
            })?;
            let points = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    v.map(|v| Point {
                        t: i as i64 * interval_ms,
                        v,
                    })
                })
                .collect();
            // A series given twice: the later definition replaces the earlier one.
            defs.insert(Labels::from_pairs(pairs), points);
        }
        Ok(defs.into_iter().map(|(l, p)| (l, p, 0)).collect())
    }

    /// Every group of every rule file, ordered by `group_eval_order` (others first, in file
    /// order, as the order index of an unnamed group is 0).
    fn load_groups(&self) -> Result<Vec<RuleGroup>, Vec<String>> {
        let mut keyed: Vec<(String, RuleGroup)> = Vec::new();
        for path in self.rule_files {
            let name = path.display().to_string();
            let text = read_text(path).map_err(|e| vec![e])?;
            let file = parse_rule_file(&name, &text)
                .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?;
            for g in file.groups {
                let key = format!("{name};{}", g.name);
                match keyed.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = g,
                    None => keyed.push((key, g)),
                }
            }
        }
        let mut groups: Vec<RuleGroup> = keyed.into_iter().map(|(_, g)| g).collect();
        groups.sort_by_key(|g| self.group_order.get(&g.name).copied().unwrap_or(0));
        Ok(groups)
    }
}

/// Appends the input samples at or before `ts` (promtool's `WithSamplesTill`); a sample not
/// after its series' newest one is dropped, as a TSDB commit drops it.
fn load_until(input: &mut Input, store: &mut TestStore, ts: i64) {
    for (labels, points, next) in input.iter_mut() {
        while let Some(p) = points.get(*next) {
            if p.t > ts {
                break;
            }
            let _ = store.append(labels, p.t, p.v);
            *next += 1;
        }
    }
}

/// Evaluates one group and writes its samples; returns promtool's rule error lines.
fn eval_one(
    engine: &Engine,
    group: &RuleGroup,
    state: &mut GroupState,
    store: &mut TestStore,
    ts: i64,
    opts: &EvalOptions,
) -> Vec<String> {
    let out = match eval_group(engine, group, &store.mem, ts, state, opts) {
        Ok(o) => o,
        Err(e) => return vec![format!("    group: {}, err: {e}", group.name)],
    };
    let mut failed: BTreeMap<usize, String> = out
        .failures
        .iter()
        .map(|f| (f.rule_index, f.error.to_string()))
        .collect();
    for s in &out.samples {
        if let Err(e) = store.append(&s.labels, s.t, s.v)
            && !is_stale(s.v)
        {
            failed.entry(s.rule_index).or_insert_with(|| e.to_owned());
        }
    }
    *state = out.state;
    failed
        .into_iter()
        .map(|(i, e)| {
            format!(
                "    rule: {}, time: {}, err: {e}",
                group.rules[i].name(),
                go_duration(ts)
            )
        })
        .collect()
}

/// Compares the firing alerts named by `case` with its expectation.
fn check_alerts(
    tg: &TestGroup,
    case: &AlertTest,
    groups: &[RuleGroup],
    states: &[GroupState],
) -> Option<String> {
    let mut got: Vec<(Pairs, Pairs)> = Vec::new();
    for (g, state) in groups.iter().zip(states) {
        for (rule, rs) in g.rules.iter().zip(&state.rules) {
            let Rule::Alerting(a) = rule else { continue };
            if a.name != case.alertname {
                continue;
            }
            for alert in rs.alerts.values().filter(|a| a.state == AlertState::Firing) {
                got.push((
                    alert
                        .labels
                        .iter()
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .collect(),
                    alert.annotations.clone().into_iter().collect(),
                ));
            }
        }
    }
    let mut exp: Vec<(Pairs, Pairs)> = case
        .exp_alerts
        .iter()
        .map(|e| {
            let mut labels = e.exp_labels.clone();
            labels.insert("alertname".to_owned(), case.alertname.clone());
            (
                labels.into_iter().collect(),
                e.exp_annotations.clone().into_iter().collect(),
            )
        })
        .collect();
    got.sort();
    exp.sort();
    if got == exp {
        return None;
    }
    let name = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    let indent = "            ";
    Some(format!(
        "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        case.alertname,
        model_duration(case.eval_time.0),
        indent_lines(&alerts_string(&exp), indent),
        indent_lines(&alerts_string(&got), indent)
    ))
}

/// `labelsAndAnnotations.String()`.
fn alerts_string(list: &[(Pairs, Pairs)]) -> String {
    if list.is_empty() {
        return "[]".to_owned();
    }
    let one = |(l, a): &(Pairs, Pairs)| {
        let l = labels_string(l.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let a = labels_string(a.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        indent_lines(&format!("\nLabels:{l}\nAnnotations:{a}"), "  ")
    };
    let mut s = format!("[\n0:{}", one(&list[0]));
    for (i, la) in list.iter().enumerate().skip(1) {
        s.push_str(&format!(",\n{i}:{}", one(la)));
    }
    s.push_str("\n]");
    s
}

/// promtool's `indentLines`: every line but the first gets `indent`.
fn indent_lines(text: &str, indent: &str) -> String {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i > 0 {
                format!("{indent}{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs one `promql_expr_test`.
fn check_promql(engine: &Engine, store: &MemStore, case: &PromqlTest) -> Option<String> {
    let head = format!(
        "    expr: {}, time: {}",
        quote(&case.expr),
        model_duration(case.eval_time.0)
    );
    let got = match engine.instant(store, &case.expr, case.eval_time.0) {
        Ok(Value::Vector(v)) => v,
        Ok(Value::Scalar { t, v }) => vec![Sample {
            labels: Labels::empty(),
            t,
            v,
        }],
        Ok(_) => {
            return Some(format!(
                "{head}, err: rule result is not a vector or scalar"
            ));
        }
        Err(e) => return Some(format!("{head}, err: {}", query_message(&e))),
    };
    let mut exp: Vec<(Pairs, f64)> = Vec::new();
    for s in &case.exp_samples {
        match parse_metric(&s.labels) {
            Ok(l) => exp.push((l, s.value)),
            Err(e) => return Some(format!("{head}, err: labels {}: {e}", quote(&s.labels))),
        }
    }
    let mut got: Vec<(Pairs, f64)> = got
        .into_iter()
        .map(|s| {
            let l = s
                .labels
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            (l, s.v)
        })
        .collect();
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // reflect.DeepEqual: labels equal, values `==` (so NaN never matches).
    let equal =
        exp.len() == got.len() && exp.iter().zip(&got).all(|(e, g)| e.0 == g.0 && e.1 == g.1);
    if equal {
        return None;
    }
    Some(format!(
        "{head},\n        exp: {}\n        got: {}",
        samples_string(&exp),
        samples_string(&got)
    ))
}

/// `parsedSamplesString`.
fn samples_string(list: &[(Pairs, f64)]) -> String {
    if list.is_empty() {
        return "nil".to_owned();
    }
    list.iter()
        .map(|(l, v)| {
            format!(
                "{} {}",
                labels_string(l.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
                float_e(*v)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
