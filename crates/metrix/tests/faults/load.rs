//! Load with a memory: batches of events with ids unique to the test, sent
//! by concurrent senders, and a ledger of every call — when it was sent and
//! answered, and what each of its events was answered — for the checks by
//! event id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::client::{Api, EventStatus, Mode, Outcome};

/// How long a sender waits after a call that failed, so a dead process is
/// not hammered.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(50);

/// A valid event with this id.
pub fn event(event_id: &str) -> Json {
    json!({"eventId": event_id, "appId": "fault", "eventType": "click", "userId": "u-1"})
}

/// One batch sent, and its answer.
#[derive(Debug, Clone)]
pub struct Call {
    pub sent_at: Instant,
    pub answered_at: Instant,
    /// The ids of the batch's events, in order.
    pub event_ids: Vec<String>,
    pub outcome: Outcome,
}

impl Call {
    /// The ids of the events answered `status`.
    pub fn ids_answered(&self, status: &EventStatus) -> Vec<String> {
        match &self.outcome {
            Outcome::Answered(results) => self
                .event_ids
                .iter()
                .zip(results)
                .filter(|(_, result)| result.status == *status)
                .map(|(id, _)| id.clone())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Every call of a test, and the source of its event ids.
#[derive(Default)]
pub struct Ledger {
    calls: Mutex<Vec<Call>>,
    next_batch: AtomicU64,
}

impl Ledger {
    pub fn new() -> Arc<Ledger> {
        Arc::default()
    }

    /// `size` valid events with ids no other batch of the test has.
    pub fn fresh_events(&self, size: usize) -> Vec<Json> {
        let batch = self.next_batch.fetch_add(1, Ordering::SeqCst);
        (0..size).map(|index| event(&format!("b{batch}-e{index}"))).collect()
    }

    /// Sends `events` and records the call.
    pub async fn send(&self, api: &Api, mode: Mode, events: Vec<Json>) -> Outcome {
        let event_ids = events
            .iter()
            .map(|event| event["eventId"].as_str().unwrap_or_default().to_owned())
            .collect();
        let sent_at = Instant::now();
        let outcome = api.track(mode, &events).await;
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Call {
                sent_at,
                answered_at: Instant::now(),
                event_ids,
                outcome: outcome.clone(),
            });
        outcome
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The ids answered `status` by the calls `selected` keeps.
    pub fn ids_answered(&self, status: &EventStatus, selected: impl Fn(&Call) -> bool) -> BTreeSet<String> {
        self.calls()
            .iter()
            .filter(|call| selected(call))
            .flat_map(|call| call.ids_answered(status))
            .collect()
    }

    /// How the calls were answered, for failure messages: `200×380, 503×20, no answer×3`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for call in self.calls() {
            let key = match call.outcome.http_status() {
                Some(status) => status.to_string(),
                None => "no answer".to_owned(),
            };
            *counts.entry(key).or_default() += 1;
        }
        counts
            .iter()
            .map(|(key, count)| format!("{key}×{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The shape of a load.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    /// Concurrent senders, each sending one batch after the other.
    pub senders: usize,
    /// Events per batch.
    pub batch_size: usize,
    pub mode: Mode,
    /// How long a sender waits between two calls.
    pub pause: Duration,
}

/// A running load; it runs until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the senders.
    pub fn start(api: &Api, ledger: &Arc<Ledger>, plan: LoadPlan) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let senders = (0..plan.senders)
            .map(|_| {
                let (api, ledger, stop) = (api.clone(), ledger.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let events = ledger.fresh_events(plan.batch_size);
                        let pause = match ledger.send(&api, plan.mode, events).await {
                            Outcome::Answered(_) => plan.pause,
                            _ => plan.pause.max(PAUSE_AFTER_FAILURE),
                        };
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Load { stop, senders }
    }

    /// Stops the senders once their calls in flight are answered.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for sender in self.senders {
            sender.await.expect("a load sender");
        }
    }
}
