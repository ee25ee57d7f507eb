//! The materialised tables and the hub that tells subscribers what changed.
//!
//! [`Tables`] holds, per source kind, what a reader of the compacted topics would see: the latest campaign
//! settings, metrics row and fatigue assessment per key (a tombstone removes the key), the open alerts (latest
//! change per campaign and kind, until it resolves) with a bounded history of changes, and credit totals per
//! campaign and model. [`Hub`] is one bounded broadcast ring of [`Change`]s: its length is the most any subscriber
//! may fall behind, and the memory it holds does not grow with the number of subscribers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use adstream_schemas::events::Campaign;
use adstream_schemas::outputs::{
    AlertSeverity, AttributionCredit, CampaignAlert, CampaignMetrics, CreativeAlert,
    CreativeFatigue,
};
use tokio::sync::broadcast;

use crate::model::{alert_level, AlertView, CampaignView, CreditTotals, FatigueView, MetricsRow};

/// One change subscribers may want.
#[derive(Debug, Clone)]
pub enum Change {
    /// A metrics row was written (new or updated window).
    Metrics(Arc<MetricsRow>),
    /// An alert of a campaign or a creative changed state, with the level it reaches (see
    /// [`alert_level`]).
    Alert(Arc<AlertView>, Option<AlertSeverity>),
    /// A creative's fatigue assessment was written.
    Fatigue(Arc<FatigueView>),
}

/// A decoded record of a source topic.
#[derive(Debug)]
pub enum Update {
    /// Campaign settings, or None for a tombstone of the campaign `key`.
    Campaign(Option<Campaign>),
    /// A metrics row, or None for a tombstone.
    Metrics(Option<CampaignMetrics>),
    /// An alert change of a campaign.
    Alert(CampaignAlert),
    /// A fatigue status change of a creative.
    CreativeAlert(CreativeAlert),
    /// A fatigue assessment, or None for a tombstone.
    Fatigue(Option<CreativeFatigue>),
    /// An attribution credit.
    Credit(AttributionCredit),
}

/// Metrics rows by (campaign, granularity symbol, window start).
type MetricsKey = (String, String, i64);

/// The in-memory tables.
#[derive(Debug, Default)]
pub struct Tables {
    /// Campaign settings by campaign id.
    pub campaigns: BTreeMap<String, CampaignView>,
    /// Latest metrics row per window.
    pub metrics: BTreeMap<MetricsKey, MetricsRow>,
    /// The window of each metrics record key, so a tombstone (which has only the key) finds its row.
    metrics_keys: HashMap<Vec<u8>, MetricsKey>,
    /// Latest change per (campaign, kind, creative, empty for a campaign alert) of the alerts still firing.
    pub open_alerts: BTreeMap<(String, String, String), AlertView>,
    /// The newest alert changes, oldest first, at most `alert_history` of them.
    pub alert_history: VecDeque<AlertView>,
    alert_history_limit: usize,
    /// Latest fatigue assessment per creative.
    pub fatigue: BTreeMap<String, FatigueView>,
    /// Credit totals per (campaign, model symbol).
    pub credits: BTreeMap<(String, String), CreditTotals>,
}

impl Tables {
    /// Empty tables keeping at most `alert_history` alert changes.
    pub fn new(alert_history: usize) -> Tables {
        Tables {
            alert_history_limit: alert_history,
            ..Tables::default()
        }
    }

    /// Applies one record (`key`: its Kafka key) and returns what subscribers should hear of it.
    pub fn apply(&mut self, key: &[u8], update: Update) -> Option<Change> {
        match update {
            Update::Campaign(Some(campaign)) => {
                self.campaigns
                    .insert(campaign.campaign_id.clone(), CampaignView::from(&campaign));
                None
            }
            Update::Campaign(None) => {
                self.campaigns.remove(String::from_utf8_lossy(key).as_ref());
                None
            }
            Update::Metrics(Some(row)) => {
                let view = MetricsRow::from(&row);
                let window = (
                    view.campaign_id.clone(),
                    view.granularity.clone(),
                    view.window_start,
                );
                if let Some(previous) = self.metrics_keys.insert(key.to_vec(), window.clone()) {
                    if previous != window {
                        self.metrics.remove(&previous);
                    }
                }
                self.metrics.insert(window, view.clone());
                Some(Change::Metrics(Arc::new(view)))
            }
            Update::Metrics(None) => {
                if let Some(window) = self.metrics_keys.remove(key) {
                    self.metrics.remove(&window);
                }
                None
            }
            Update::Alert(alert) => Some(self.alert_changed(AlertView::from(&alert))),
            Update::CreativeAlert(alert) => Some(self.alert_changed(AlertView::from(&alert))),
            Update::Fatigue(Some(fatigue)) => {
                let view = FatigueView::from(&fatigue);
                self.fatigue.insert(view.creative_id.clone(), view.clone());
                Some(Change::Fatigue(Arc::new(view)))
            }
            Update::Fatigue(None) => {
                self.fatigue.remove(String::from_utf8_lossy(key).as_ref());
                None
            }
            Update::Credit(credit) => {
                let model = credit.model.symbol().to_owned();
                let totals = self
                    .credits
                    .entry((credit.campaign_id.clone(), model.clone()))
                    .or_insert_with(|| CreditTotals {
                        campaign_id: credit.campaign_id.clone(),
                        model,
                        conversions: 0.0,
                        revenue_micros: 0.0,
                        credits: 0,
                    });
                totals.conversions += credit.conversions;
                totals.revenue_micros += credit.revenue_micros;
                totals.credits += 1;
                None
            }
        }
    }
}

impl Tables {
    /// Records an alert change of a campaign or a creative: open until it resolves, and in the history.
    fn alert_changed(&mut self, view: AlertView) -> Change {
        let level = alert_level(&view);
        let slot = (
            view.campaign_id.clone(),
            view.kind.clone(),
            view.creative_id.clone().unwrap_or_default(),
        );
        if view.severity == AlertSeverity::Resolved.as_str() {
            self.open_alerts.remove(&slot);
        } else {
            self.open_alerts.insert(slot, view.clone());
        }
        if self.alert_history_limit > 0 {
            if self.alert_history.len() >= self.alert_history_limit {
                self.alert_history.pop_front();
            }
            self.alert_history.push_back(view.clone());
        }
        Change::Alert(Arc::new(view), level)
    }
}

/// The tables, whether they caught up with the topics, and the broadcast of changes.
#[derive(Debug)]
pub struct Hub {
    tables: RwLock<Tables>,
    ready: AtomicBool,
    changes: broadcast::Sender<Change>,
}

impl Hub {
    /// An empty hub whose broadcast ring holds `client_buffer` changes (at least 1).
    pub fn new(alert_history: usize, client_buffer: usize) -> Hub {
        let (changes, _) = broadcast::channel(client_buffer.max(1));
        Hub {
            tables: RwLock::new(Tables::new(alert_history)),
            ready: AtomicBool::new(false),
            changes,
        }
    }

    /// Reads the tables. A poisoned lock is still read: the tables are replaced record by record, never left
    /// half-written by a panic in between.
    pub fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a record and tells the subscribers.
    pub fn apply(&self, key: &[u8], update: Update) {
        let change = self.write().apply(key, update);
        if let Some(change) = change {
            // No subscriber is not an error: the change is in the tables.
            let _ = self.changes.send(change);
        }
    }

    /// A receiver of the changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Whether every partition of every source was read to its end once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the tables caught up.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adstream_schemas::outputs::{AlertKind, FatigueStatus};

    fn alert(
        campaign: &str,
        severity: AlertSeverity,
        previous: Option<AlertSeverity>,
    ) -> CampaignAlert {
        CampaignAlert {
            alert_id: format!("{campaign}|DAILY_BUDGET_REACHED|1"),
            campaign_id: campaign.to_owned(),
            kind: AlertKind::DailyBudgetReached,
            severity,
            previous_severity: previous,
            observed: 0.95,
            threshold: 0.9,
            rule: "daily_budget_reached:tier1".to_owned(),
            rule_level: 0.9,
            message: "m".to_owned(),
            day_start: 0,
            event_time: 1,
            correlation_id: "c".to_owned(),
        }
    }

    #[test]
    fn alerts_open_resolve_and_keep_a_bounded_history() {
        let mut tables = Tables::new(2);
        let fired = tables.apply(b"a", Update::Alert(alert("a", AlertSeverity::High, None)));
        assert!(matches!(
            fired,
            Some(Change::Alert(_, Some(AlertSeverity::High)))
        ));
        assert_eq!(tables.open_alerts.len(), 1);
        tables.apply(
            b"a",
            Update::Alert(alert(
                "a",
                AlertSeverity::Critical,
                Some(AlertSeverity::High),
            )),
        );
        assert_eq!(
            tables.open_alerts[&(
                "a".to_owned(),
                "DAILY_BUDGET_REACHED".to_owned(),
                String::new()
            )]
                .severity,
            "CRITICAL"
        );
        let resolved = tables.apply(
            b"a",
            Update::Alert(alert(
                "a",
                AlertSeverity::Resolved,
                Some(AlertSeverity::Critical),
            )),
        );
        // A resolution reaches the level the alert had, so a critical-only subscriber hears it.
        assert!(matches!(
            resolved,
            Some(Change::Alert(_, Some(AlertSeverity::Critical)))
        ));
        assert!(tables.open_alerts.is_empty());
        let history: Vec<_> = tables
            .alert_history
            .iter()
            .map(|a| a.severity.as_str())
            .collect();
        assert_eq!(
            history,
            ["CRITICAL", "RESOLVED"],
            "only the newest two are kept"
        );
    }

    fn creative_alert(
        creative: &str,
        status: FatigueStatus,
        previous: Option<FatigueStatus>,
    ) -> CreativeAlert {
        CreativeAlert {
            alert_id: format!("{creative}|7"),
            creative_id: creative.to_owned(),
            campaign_id: "a".to_owned(),
            status,
            previous_status: previous,
            score: 0.6,
            baseline_ctr: Some(0.02),
            current_ctr: Some(0.012),
            change_started_at: Some(3),
            event_time: 7,
            emitted_at: 8,
            correlation_id: "c".to_owned(),
        }
    }

    #[test]
    fn creative_alerts_join_the_alert_stream_per_creative() {
        let mut tables = Tables::new(10);
        tables.apply(b"a", Update::Alert(alert("a", AlertSeverity::High, None)));
        let fatigued = tables.apply(
            b"a-cr-1",
            Update::CreativeAlert(creative_alert(
                "a-cr-1",
                FatigueStatus::Fatigued,
                Some(FatigueStatus::Limited),
            )),
        );
        let Some(Change::Alert(view, level)) = fatigued else {
            panic!("a creative alert is an alert change: {fatigued:?}")
        };
        assert_eq!(level, Some(AlertSeverity::High));
        assert_eq!(
            (
                view.kind.as_str(),
                view.creative_id.as_deref(),
                view.severity.as_str(),
                view.previous_severity.as_deref(),
                view.rule.as_str(),
                view.day_start,
            ),
            (
                "CREATIVE_FATIGUE",
                Some("a-cr-1"),
                "HIGH",
                Some("MEDIUM"),
                "creative_fatigue:fatigued",
                None
            )
        );
        assert_eq!((view.observed, view.threshold), (0.012, 0.02));
        assert_eq!(
            view.message,
            "creative a-cr-1 is FATIGUED (was LIMITED): CTR 1.20% against a 2.00% baseline (score 0.60)"
        );
        // A second creative of the same campaign is its own open alert, beside the campaign's.
        tables.apply(
            b"a-cr-2",
            Update::CreativeAlert(creative_alert("a-cr-2", FatigueStatus::Limited, None)),
        );
        assert_eq!(tables.open_alerts.len(), 3);
        // Back to healthy resolves it, at the level it had.
        let healthy = tables.apply(
            b"a-cr-1",
            Update::CreativeAlert(creative_alert(
                "a-cr-1",
                FatigueStatus::Healthy,
                Some(FatigueStatus::Fatigued),
            )),
        );
        assert!(matches!(
            healthy,
            Some(Change::Alert(ref view, Some(AlertSeverity::High))) if view.severity == "RESOLVED"
        ));
        assert_eq!(tables.open_alerts.len(), 2);
        assert_eq!(tables.alert_history.len(), 4);
    }

    #[test]
    fn a_hub_ring_drops_a_subscriber_that_falls_behind() {
        let hub = Hub::new(10, 2);
        let mut slow = hub.subscribe();
        for i in 0..3 {
            hub.apply(
                b"a",
                Update::Alert(alert(&format!("c{i}"), AlertSeverity::Low, None)),
            );
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
    }
}
