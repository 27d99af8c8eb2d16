//! The run's timeline as an SVG: one lane per zone (its committed state as coloured bands —
//! healthy green, degraded amber, drained red, probation blue — and the shards its workers
//! own as a step line with the count at each change), one lane per rule group (each
//! committed evaluation a tick), one lane per receiver (each expected notification a hollow
//! mark at its due time, each arrival a dot: green processed, red refused), and the
//! harness's faults as vertical lines. Pure: it formats what it is given.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Pixels per second of run time.
const PX_PER_S: f64 = 40.0;
/// Height of one lane.
const LANE_PX: f64 = 28.0;
/// Left margin for the lane labels.
const LABEL_PX: f64 = 130.0;

/// One arrival at a receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Wall ms.
    pub at_ms: i64,
    /// Whether the emulator processed it (a refused 5xx/429 is not).
    pub processed: bool,
    /// Tooltip text.
    pub label: String,
}

/// One zone's lane.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZoneLane {
    /// Committed state changes: (wall ms, state); healthy before the first.
    pub states: Vec<(i64, String)>,
    /// Shards its workers own, after each change: (wall ms, shards).
    pub shards: Vec<(i64, usize)>,
}

/// What the timeline shows; every time is wall ms.
#[derive(Debug, Clone, Default)]
pub struct TimelineInput {
    /// Zone lanes, drawn first.
    pub zones: BTreeMap<String, ZoneLane>,
    /// The workload's start (time 0 of the axis).
    pub t0_ms: i64,
    /// The end of the axis.
    pub end_ms: i64,
    /// Harness actions: (wall ms, what).
    pub faults: Vec<(i64, String)>,
    /// Evaluation commits per rule group.
    pub evaluations: BTreeMap<String, Vec<i64>>,
    /// Due times of expected notifications per receiver: (wall ms, label, optional).
    pub expected: BTreeMap<String, Vec<(i64, String, bool)>>,
    /// Arrivals per receiver.
    pub arrivals: BTreeMap<String, Vec<Arrival>>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the SVG document.
pub fn render(input: &TimelineInput) -> String {
    let x = |ms: i64| LABEL_PX + (ms - input.t0_ms) as f64 / 1000.0 * PX_PER_S;
    let span_s = ((input.end_ms - input.t0_ms).max(1000) as f64 / 1000.0).ceil();
    let zone_lane = |z: &str| format!("zone {z}");
    let zone_lanes: Vec<String> = input.zones.keys().map(|z| zone_lane(z)).collect();
    let lanes: Vec<String> = zone_lanes
        .iter()
        .chain(input.evaluations.keys())
        .chain(input.expected.keys().chain(input.arrivals.keys()))
        .fold(Vec::new(), |mut v, k| {
            if !v.contains(k) {
                v.push(k.clone());
            }
            v
        });
    let width = LABEL_PX + span_s * PX_PER_S + 20.0;
    let height = LANE_PX * (lanes.len() as f64 + 2.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="monospace" font-size="11">"#
    );
    // Axis: a tick every second, a label every 5.
    for s in 0..=span_s as i64 {
        let px = LABEL_PX + s as f64 * PX_PER_S;
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/>"##,
            LANE_PX,
            height - LANE_PX
        );
        if s % 5 == 0 {
            let _ = writeln!(out, r#"<text x="{px:.1}" y="12">{s}s</text>"#);
        }
    }
    for (i, lane) in lanes.iter().enumerate() {
        let y = LANE_PX * (i as f64 + 1.5);
        let _ = writeln!(
            out,
            r#"<text x="4" y="{:.1}">{}</text>"#,
            y + 4.0,
            esc(lane)
        );
        if let Some(zone) = input
            .zones
            .iter()
            .find(|(z, _)| zone_lane(z) == *lane)
            .map(|(_, l)| l)
        {
            draw_zone(&mut out, zone, y, input.t0_ms, input.end_ms, &x);
            continue;
        }
        for t in input.evaluations.get(lane).into_iter().flatten() {
            let _ = writeln!(
                out,
                r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#68a"/>"##,
                x(*t),
                y - 6.0,
                y + 6.0
            );
        }
        for (t, label, optional) in input.expected.get(lane).into_iter().flatten() {
            let dash = if *optional {
                r#" stroke-dasharray="2""#
            } else {
                ""
            };
            let _ = writeln!(
                out,
                r##"<circle cx="{:.1}" cy="{y:.1}" r="7" fill="none" stroke="#333"{dash}><title>due: {}</title></circle>"##,
                x(*t),
                esc(label)
            );
        }
        for a in input.arrivals.get(lane).into_iter().flatten() {
            let color = if a.processed { "#2a2" } else { "#d22" };
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="4" fill="{color}"><title>{}</title></circle>"#,
                x(a.at_ms),
                esc(&a.label)
            );
        }
    }
    for (t, what) in &input.faults {
        let px = x(*t);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#c60" stroke-width="2"><title>{}</title></line>"##,
            LANE_PX,
            height - LANE_PX,
            esc(what)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn state_color(state: &str) -> &'static str {
    match state {
        "healthy" => "#9d9",
        "degraded" => "#fc6",
        "drained" => "#e77",
        "probation" => "#8bf",
        _ => "#ccc",
    }
}

/// A zone's state bands and its shard count as a step line (lane centre `y`).
fn draw_zone(out: &mut String, zone: &ZoneLane, y: f64, t0: i64, end: i64, x: &dyn Fn(i64) -> f64) {
    let mut bands: Vec<(i64, &str)> = vec![(t0, "healthy")];
    bands.extend(zone.states.iter().map(|(t, s)| ((*t).max(t0), s.as_str())));
    for (i, (from, state)) in bands.iter().enumerate() {
        let to = bands.get(i + 1).map_or(end, |b| b.0).max(*from);
        let _ = writeln!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" opacity="0.5"><title>{}</title></rect>"#,
            x(*from),
            y - LANE_PX / 2.0 + 2.0,
            x(to) - x(*from),
            LANE_PX - 4.0,
            state_color(state),
            esc(state)
        );
    }
    let max = zone
        .shards
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let level = |n: usize| y + LANE_PX / 2.0 - 4.0 - (n as f64 / max) * (LANE_PX - 10.0);
    let mut points = Vec::new();
    let mut last: Option<usize> = None;
    for (t, n) in &zone.shards {
        let px = x((*t).max(t0));
        if let Some(prev) = last {
            points.push(format!("{px:.1},{:.1}", level(prev)));
        }
        points.push(format!("{px:.1},{:.1}", level(*n)));
        let _ = writeln!(
            out,
            r#"<text x="{px:.1}" y="{:.1}" font-size="9">{n}</text>"#,
            level(*n) - 2.0
        );
        last = Some(*n);
    }
    if let Some(n) = last {
        points.push(format!("{:.1},{:.1}", x(end), level(n)));
    }
    if !points.is_empty() {
        let _ = writeln!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#345" stroke-width="1.5"/>"##,
            points.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lanes_marks_and_faults() {
        let mut input = TimelineInput {
            t0_ms: 1_000,
            end_ms: 11_000,
            faults: vec![(5_000, "kill <zone> b".into())],
            ..TimelineInput::default()
        };
        input
            .evaluations
            .insert("chaos/load-0".into(), vec![2_000, 3_000]);
        input
            .expected
            .insert("team-a".into(), vec![(4_000, "s00 firing".into(), false)]);
        input.arrivals.insert(
            "team-a".into(),
            vec![Arrival {
                at_ms: 4_500,
                processed: true,
                label: "s00 firing".into(),
            }],
        );
        input.zones.insert(
            "b".into(),
            ZoneLane {
                states: vec![(6_000, "degraded".into()), (9_000, "healthy".into())],
                shards: vec![(1_500, 100), (7_000, 80)],
            },
        );
        let svg = render(&input);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(">zone b<"));
        // Healthy, degraded, healthy again.
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("<title>degraded</title>"));
        assert!(svg.contains(">100<") && svg.contains(">80<"));
        assert!(svg.contains("kill &lt;zone&gt; b"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains(">team-a<") && svg.contains(">chaos/load-0<"));
    }
}
