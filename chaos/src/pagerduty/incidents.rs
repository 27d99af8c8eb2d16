//! PagerDuty's stateful incident table (providers.md §1.1 "Dedup semantics"), pure: events
//! and a timestamp in, the outcome out.
//!
//! Keyed by `(routing_key, dedup_key)`: a trigger on an open incident appends to it; a
//! trigger when none is open opens a new one; acknowledge/resolve apply only to an open
//! incident of the same routing key and are otherwise dropped (the API still answers 202).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The three event actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    Trigger,
    Acknowledge,
    Resolve,
}

impl EventAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "trigger" => Some(Self::Trigger),
            "acknowledge" => Some(Self::Acknowledge),
            "resolve" => Some(Self::Resolve),
            _ => None,
        }
    }
}

/// An incident's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Triggered,
    Acknowledged,
    Resolved,
}

/// One event applied to an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentEvent {
    pub time_ms: i64,
    pub action: EventAction,
    /// `payload.summary` of a trigger.
    #[serde(default)]
    pub summary: Option<String>,
    /// `payload.severity` of a trigger.
    #[serde(default)]
    pub severity: Option<String>,
}

/// One incident (PagerDuty: alert) and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// `Q` + a sequence number, unique within the emulator.
    pub id: String,
    pub routing_key: String,
    pub dedup_key: String,
    pub status: IncidentStatus,
    pub opened_ms: i64,
    #[serde(default)]
    pub resolved_ms: Option<i64>,
    /// Every event applied to it, the opening trigger first.
    pub events: Vec<IncidentEvent>,
}

/// An acknowledge/resolve that found no open incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedEvent {
    pub time_ms: i64,
    pub routing_key: String,
    pub dedup_key: String,
    pub action: EventAction,
}

/// What an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Opened { incident: String },
    Appended { incident: String },
    Dropped,
}

/// An event to apply.
#[derive(Debug, Clone)]
pub struct Event {
    pub routing_key: String,
    pub dedup_key: String,
    pub action: EventAction,
    pub summary: Option<String>,
    pub severity: Option<String>,
    pub time_ms: i64,
}

/// The table.
#[derive(Debug, Default)]
pub struct IncidentTable {
    incidents: Vec<Incident>,
    /// Index into `incidents` of the open incident per (routing_key, dedup_key).
    open: HashMap<(String, String), usize>,
    dropped: Vec<DroppedEvent>,
}

/// The table as `GET /incidents` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentsView {
    pub incidents: Vec<Incident>,
    pub dropped_events: Vec<DroppedEvent>,
}

impl IncidentsView {
    /// How many incidents each dedup key opened (the figure chaos runs check: 1 per group).
    pub fn per_dedup_key(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for incident in &self.incidents {
            *counts.entry(incident.dedup_key.clone()).or_insert(0) += 1;
        }
        counts
    }
}

impl IncidentTable {
    /// Applies one event.
    pub fn apply(&mut self, event: Event) -> Outcome {
        let key = (event.routing_key.clone(), event.dedup_key.clone());
        let logged = IncidentEvent {
            time_ms: event.time_ms,
            action: event.action,
            summary: event.summary,
            severity: event.severity,
        };
        let outcome = match (event.action, self.open.get(&key).copied()) {
            (EventAction::Trigger, Some(i)) => {
                self.incidents[i].events.push(logged);
                Outcome::Appended {
                    incident: self.incidents[i].id.clone(),
                }
            }
            (EventAction::Trigger, None) => {
                let id = format!("Q{:07}", self.incidents.len() + 1);
                self.incidents.push(Incident {
                    id: id.clone(),
                    routing_key: event.routing_key,
                    dedup_key: event.dedup_key,
                    status: IncidentStatus::Triggered,
                    opened_ms: event.time_ms,
                    resolved_ms: None,
                    events: vec![logged],
                });
                self.open.insert(key, self.incidents.len() - 1);
                Outcome::Opened { incident: id }
            }
            (action, Some(i)) => {
                let incident = &mut self.incidents[i];
                incident.events.push(logged);
                if action == EventAction::Resolve {
                    incident.status = IncidentStatus::Resolved;
                    incident.resolved_ms = Some(event.time_ms);
                    self.open.remove(&key);
                } else {
                    incident.status = IncidentStatus::Acknowledged;
                }
                Outcome::Appended {
                    incident: incident.id.clone(),
                }
            }
            (action, None) => {
                self.dropped.push(DroppedEvent {
                    time_ms: event.time_ms,
                    routing_key: event.routing_key,
                    dedup_key: event.dedup_key,
                    action,
                });
                Outcome::Dropped
            }
        };
        debug_assert_eq!(self.validate(), Ok(()));
        outcome
    }

    /// A copy for `GET /incidents`.
    pub fn view(&self) -> IncidentsView {
        IncidentsView {
            incidents: self.incidents.clone(),
            dropped_events: self.dropped.clone(),
        }
    }

    /// Invariants: the open index points at exactly the non-resolved incidents, one per key.
    pub fn validate(&self) -> Result<(), String> {
        let open_count = self
            .incidents
            .iter()
            .filter(|i| i.status != IncidentStatus::Resolved)
            .count();
        if open_count != self.open.len() {
            return Err(format!(
                "{open_count} open incidents but {} indexed",
                self.open.len()
            ));
        }
        for ((routing_key, dedup_key), &i) in &self.open {
            let incident = &self.incidents[i];
            if incident.status == IncidentStatus::Resolved
                || &incident.routing_key != routing_key
                || &incident.dedup_key != dedup_key
            {
                return Err(format!(
                    "open index for {dedup_key} points at {}",
                    incident.id
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: EventAction, routing_key: &str, dedup_key: &str) -> Event {
        Event {
            routing_key: routing_key.into(),
            dedup_key: dedup_key.into(),
            action,
            summary: None,
            severity: None,
            time_ms: 0,
        }
    }

    #[test]
    fn dedup_semantics_follow_pagerduty() {
        use EventAction::*;
        let mut t = IncidentTable::default();
        assert!(matches!(
            t.apply(ev(Trigger, "r", "k")),
            Outcome::Opened { .. }
        ));
        assert!(matches!(
            t.apply(ev(Trigger, "r", "k")),
            Outcome::Appended { .. }
        ));
        assert!(matches!(
            t.apply(ev(Acknowledge, "r", "k")),
            Outcome::Appended { .. }
        ));
        // Another routing key does not touch it.
        assert_eq!(t.apply(ev(Resolve, "other", "k")), Outcome::Dropped);
        assert!(matches!(
            t.apply(ev(Resolve, "r", "k")),
            Outcome::Appended { .. }
        ));
        assert_eq!(t.apply(ev(Resolve, "r", "k")), Outcome::Dropped);
        assert_eq!(t.apply(ev(Acknowledge, "r", "k")), Outcome::Dropped);
        assert!(matches!(
            t.apply(ev(Trigger, "r", "k")),
            Outcome::Opened { .. }
        ));
        t.validate().unwrap();
        let view = t.view();
        assert_eq!(view.per_dedup_key()["k"], 2);
        assert_eq!(view.incidents[0].status, IncidentStatus::Resolved);
        assert_eq!(view.incidents[0].events.len(), 4);
        assert_eq!(view.incidents[1].status, IncidentStatus::Triggered);
        assert_eq!(view.dropped_events.len(), 3);
    }
}
