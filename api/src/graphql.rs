//! The GraphQL schema: queries over the materialised tables and subscriptions to their changes.
//!
//! Every operation is checked against [`ApiLimits::max_depth`] and [`ApiLimits::max_complexity`] before it runs
//! (async-graphql's validation answers with a GraphQL error). A WebSocket connection carries a [`Slots`] counter in
//! its connection data: a subscription beyond [`ApiLimits::max_subscriptions_per_connection`] is refused with a
//! GraphQL error, and a subscriber that falls more than [`ApiLimits::client_buffer`] updates behind receives one
//! error naming how many it missed and its subscription ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_graphql::{Context, EmptyMutation, Object, OutputType, Schema, Subscription};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::model::{
    firing_severity, AlertView, CampaignView, CreditTotals, FatigueView, MetricsRow, MinSeverity,
    WindowGranularity,
};
use crate::settings::ApiLimits;
use crate::store::{Change, Hub};

/// The API's schema type.
pub type ApiSchema = Schema<Query, EmptyMutation, Subscription>;

/// Builds the schema over `hub` with `limits`.
pub fn schema(hub: Arc<Hub>, limits: &ApiLimits) -> ApiSchema {
    Schema::build(Query, EmptyMutation, Subscription)
        .data(hub)
        .data(*limits)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .finish()
}

/// The subscriptions one WebSocket connection holds, shared by its subscriptions' streams.
#[derive(Debug, Default, Clone)]
pub struct Slots(Arc<AtomicUsize>);

/// One taken slot; frees it when the subscription's stream is dropped.
#[derive(Debug)]
struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    /// Takes a slot if fewer than `max` are taken.
    fn take(&self, max: usize) -> Option<SlotGuard> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| SlotGuard(self.0.clone()))
    }
}

fn hub<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Arc<Hub>> {
    ctx.data::<Arc<Hub>>()
}

fn limits(ctx: &Context<'_>) -> ApiLimits {
    ctx.data::<ApiLimits>().copied().unwrap_or_default()
}

fn wanted(ids: &Option<Vec<String>>, campaign: &str) -> bool {
    ids.as_ref()
        .is_none_or(|ids| ids.iter().any(|id| id == campaign))
}

/// Queries.
pub struct Query;

#[Object]
impl Query {
    /// Whether every source topic was read to its end once (what `/readyz` reports).
    async fn ready(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        Ok(hub(ctx)?.is_ready())
    }

    /// Campaigns with their settings, by id; only those in `campaignIds` when given.
    async fn campaigns(
        &self,
        ctx: &Context<'_>,
        campaign_ids: Option<Vec<String>>,
    ) -> async_graphql::Result<Vec<CampaignView>> {
        let tables = hub(ctx)?.read();
        Ok(tables
            .campaigns
            .values()
            .filter(|c| wanted(&campaign_ids, &c.campaign_id))
            .take(limits(ctx).max_rows)
            .cloned()
            .collect())
    }

    /// Metrics rows of one granularity whose window starts in `[from, to)` (epoch millis; open-ended when
    /// absent), ordered by campaign and window; only for `campaignIds` when given. At most the server's row limit.
    async fn metrics(
        &self,
        ctx: &Context<'_>,
        granularity: WindowGranularity,
        campaign_ids: Option<Vec<String>>,
        from: Option<i64>,
        to: Option<i64>,
    ) -> async_graphql::Result<Vec<MetricsRow>> {
        let tables = hub(ctx)?.read();
        let symbol = granularity.symbol();
        let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
        Ok(tables
            .metrics
            .values()
            .filter(|m| {
                m.granularity == symbol
                    && wanted(&campaign_ids, &m.campaign_id)
                    && (from..to).contains(&m.window_start)
            })
            .take(limits(ctx).max_rows)
            .cloned()
            .collect())
    }

    /// Each campaign's latest window of one granularity (the current hour or day), by campaign.
    async fn latest_metrics(
        &self,
        ctx: &Context<'_>,
        granularity: WindowGranularity,
        campaign_ids: Option<Vec<String>>,
    ) -> async_graphql::Result<Vec<MetricsRow>> {
        let tables = hub(ctx)?.read();
        let symbol = granularity.symbol();
        let max_rows = limits(ctx).max_rows;
        let mut latest: Vec<MetricsRow> = Vec::new();
        for row in tables.metrics.values() {
            if row.granularity != symbol || !wanted(&campaign_ids, &row.campaign_id) {
                continue;
            }
            // Rows are ordered by (campaign, granularity, window start): the last one of a campaign wins.
            if let Some(last) = latest
                .last_mut()
                .filter(|last| last.campaign_id == row.campaign_id)
            {
                *last = row.clone();
            } else if latest.len() < max_rows {
                latest.push(row.clone());
            } else {
                break;
            }
        }
        Ok(latest)
    }

    /// Alerts firing now (the latest change per campaign and kind, and per creative for `CREATIVE_FATIGUE`, unless
    /// it resolved), at or above `minSeverity`.
    async fn open_alerts(
        &self,
        ctx: &Context<'_>,
        campaign_ids: Option<Vec<String>>,
        #[graphql(default_with = "MinSeverity::Low")] min_severity: MinSeverity,
    ) -> async_graphql::Result<Vec<AlertView>> {
        let tables = hub(ctx)?.read();
        Ok(tables
            .open_alerts
            .values()
            .filter(|a| wanted(&campaign_ids, &a.campaign_id))
            .filter(|a| {
                firing_severity(&a.severity).is_some_and(|level| min_severity.admits(level))
            })
            .take(limits(ctx).max_rows)
            .cloned()
            .collect())
    }

    /// The newest alert changes, newest first (at most `limit`, and what the server keeps in memory).
    async fn alert_history(
        &self,
        ctx: &Context<'_>,
        campaign_ids: Option<Vec<String>>,
        #[graphql(default = 100)] limit: usize,
    ) -> async_graphql::Result<Vec<AlertView>> {
        let tables = hub(ctx)?.read();
        Ok(tables
            .alert_history
            .iter()
            .rev()
            .filter(|a| wanted(&campaign_ids, &a.campaign_id))
            .take(limit.min(limits(ctx).max_rows))
            .cloned()
            .collect())
    }

    /// Creatives' latest fatigue assessments; only those of `campaignIds`, and of `status` (`FATIGUED`, ...) when
    /// given.
    async fn creative_fatigue(
        &self,
        ctx: &Context<'_>,
        campaign_ids: Option<Vec<String>>,
        status: Option<String>,
    ) -> async_graphql::Result<Vec<FatigueView>> {
        let tables = hub(ctx)?.read();
        Ok(tables
            .fatigue
            .values()
            .filter(|f| wanted(&campaign_ids, &f.campaign_id))
            .filter(|f| status.as_ref().is_none_or(|s| *s == f.status))
            .take(limits(ctx).max_rows)
            .cloned()
            .collect())
    }

    /// Attribution credits summed per campaign and model; only `campaignIds` and `model` (`LINEAR`, ...) when
    /// given.
    async fn attribution_credits(
        &self,
        ctx: &Context<'_>,
        campaign_ids: Option<Vec<String>>,
        model: Option<String>,
    ) -> async_graphql::Result<Vec<CreditTotals>> {
        let tables = hub(ctx)?.read();
        Ok(tables
            .credits
            .values()
            .filter(|c| wanted(&campaign_ids, &c.campaign_id))
            .filter(|c| model.as_ref().is_none_or(|m| *m == c.model))
            .take(limits(ctx).max_rows)
            .cloned()
            .collect())
    }
}

/// A stream of what `pick` takes from the hub's changes, holding one of the connection's slots. Lagging behind
/// the ring ends it with one error.
pub fn change_stream<T, F>(
    hub: &Hub,
    guard: Option<impl Send + 'static>,
    pick: F,
) -> impl Stream<Item = async_graphql::Result<T>> + Send + 'static
where
    T: Send + 'static,
    F: Fn(&Change) -> Option<T> + Send + Sync + 'static,
{
    let receiver = hub.subscribe();
    futures::stream::unfold(
        (receiver, guard, pick, false),
        |(mut receiver, guard, pick, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match receiver.recv().await {
                    Ok(change) => {
                        if let Some(item) = pick(&change) {
                            return Some((Ok(item), (receiver, guard, pick, false)));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "subscriber too slow: dropped");
                        let error = async_graphql::Error::new(format!(
                            "too slow: {missed} updates were missed; the subscription is closed, subscribe again \
                             and re-read the current state with a query"
                        ));
                        return Some((Err(error), (receiver, guard, pick, true)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    )
}

/// Takes a subscription slot of the connection.
fn slot(ctx: &Context<'_>) -> async_graphql::Result<SlotGuard> {
    let max = limits(ctx).max_subscriptions_per_connection;
    let slots = ctx
        .data::<Slots>()
        .map_err(|_| async_graphql::Error::new("subscriptions are served over WebSocket only"))?;
    slots.take(max).ok_or_else(|| {
        async_graphql::Error::new(format!(
            "too many subscriptions on this connection: at most {max}"
        ))
    })
}

fn subscribe<T: OutputType + 'static>(
    ctx: &Context<'_>,
    pick: impl Fn(&Change) -> Option<T> + Send + Sync + 'static,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<T>>> {
    let guard = slot(ctx)?;
    Ok(change_stream(hub(ctx)?, Some(guard), pick))
}

/// Subscriptions (over `graphql-transport-ws` at `/graphql/ws`).
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Every metrics row written from now on, of `granularity` (both when absent), of `campaignIds` (all when
    /// absent).
    async fn campaign_metrics_updated(
        &self,
        ctx: &Context<'_>,
        campaign_ids: Option<Vec<String>>,
        granularity: Option<WindowGranularity>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<MetricsRow>>> {
        subscribe(ctx, move |change| match change {
            Change::Metrics(row)
                if wanted(&campaign_ids, &row.campaign_id)
                    && granularity.is_none_or(|g| g.symbol() == row.granularity) =>
            {
                Some(MetricsRow::clone(row))
            }
            _ => None,
        })
    }

    /// Every alert change of a campaign or a creative from now on at or above `minSeverity` (a resolution counts
    /// at the severity it ends).
    async fn alert_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "MinSeverity::Low")] min_severity: MinSeverity,
        campaign_ids: Option<Vec<String>>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<AlertView>>> {
        subscribe(ctx, move |change| match change {
            Change::Alert(alert, Some(level))
                if min_severity.admits(*level) && wanted(&campaign_ids, &alert.campaign_id) =>
            {
                Some(AlertView::clone(alert))
            }
            _ => None,
        })
    }

    /// Every creative fatigue assessment written from now on, of `campaignIds` (all when absent).
    async fn creative_fatigue_changed(
        &self,
        ctx: &Context<'_>,
        campaign_ids: Option<Vec<String>>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<FatigueView>>> {
        subscribe(ctx, move |change| match change {
            Change::Fatigue(fatigue) if wanted(&campaign_ids, &fatigue.campaign_id) => {
                Some(FatigueView::clone(fatigue))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_refuse_past_the_limit_and_free_on_drop() {
        let slots = Slots::default();
        let first = slots.take(2).expect("first");
        let _second = slots.take(2).expect("second");
        assert!(slots.take(2).is_none(), "a third subscription is refused");
        drop(first);
        assert!(slots.take(2).is_some(), "a freed slot can be taken again");
    }

    #[tokio::test]
    async fn an_over_deep_query_is_refused_with_a_graphql_error() {
        let limits = ApiLimits {
            max_depth: 2,
            ..ApiLimits::default()
        };
        let schema = schema(Arc::new(Hub::new(10, 10)), &limits);
        let shallow = schema.execute("{ campaigns { campaignId } }").await;
        assert!(shallow.errors.is_empty(), "{:?}", shallow.errors);
        let deep = schema.execute("{ campaigns { targets { minCtr } } }").await;
        assert_eq!(deep.errors.len(), 1);
        assert!(
            deep.errors[0].message.contains("nested too deep"),
            "{}",
            deep.errors[0].message
        );
    }
}
