//! The sync loop of one platform connector.
//!
//! Per account, a pass covers the days from the restatement look-back before the last synced day (or the start
//! date on the first pass) to the end date (default: today in the account's time zone), day by day and page by
//! page. After each page the account's cursor moves past it, and the page's rows, its malformed rows and the new
//! cursor are committed in one transaction ([`crate::sink`]). On start the committed cursors are read back: a pass
//! that was interrupted continues at the page after the last committed one, so a killed connector neither skips
//! nor repeats a row. Every pass reads the look-back again, and a restated number overwrites its key in the
//! compacted reports topic.

use std::collections::HashMap;

use adstream_schemas::platform::ConnectorCursor;
use chrono::{Days, NaiveDate};
use tracing::Instrument;

use crate::entities::Entity;
use crate::http::SourceError;
use crate::sink::{DeadRow, Entities, KafkaSink, PageWrite, SinkError};
use crate::source::{Account, Page, ReportSource, Row};

/// How often a page whose transaction was aborted is fetched and written again before the sync stops.
const ABORTED_PAGE_ATTEMPTS: u32 = 3;

/// Which days a connector syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// First day ever synced.
    pub start_date: NaiveDate,
    /// Last day synced; None: today in the account's time zone.
    pub end_date: Option<NaiveDate>,
    /// Days up to the last synced day that every pass reads again.
    pub lookback_days: u32,
}

/// Where a pass is: its days and the next page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// First day of the pass.
    pub from: NaiveDate,
    /// Last day of the pass.
    pub to: NaiveDate,
    /// The day being read.
    pub day: NaiveDate,
    /// The next page's token; None for the day's first page.
    pub page_token: Option<String>,
    /// Whether this continues a pass an earlier run left unfinished.
    pub resumed: bool,
}

/// A cursor's `YYYY-MM-DD` field as a date.
fn date(text: &Option<String>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.as_deref()?, "%Y-%m-%d").ok()
}

/// Where the next pass of an account with `cursor` starts, or None when there is nothing to read yet. `today` is
/// the current day in the account's time zone.
pub fn next_position(
    cursor: Option<&ConnectorCursor>,
    settings: &SyncSettings,
    today: NaiveDate,
) -> Option<Position> {
    if let Some(cursor) = cursor {
        if let (Some(from), Some(to), Some(day)) = (
            date(&cursor.pass_from),
            date(&cursor.pass_to),
            date(&cursor.next_day),
        ) {
            return Some(Position {
                from,
                to,
                day,
                page_token: cursor.page_token.clone(),
                resumed: true,
            });
        }
    }
    let synced = cursor.and_then(|c| date(&c.synced_through));
    let from = match synced {
        // The last `lookback_days` synced days are read again: platforms restate them.
        Some(last) => last
            .checked_add_days(Days::new(1))?
            .checked_sub_days(Days::new(u64::from(settings.lookback_days)))?
            .max(settings.start_date),
        None => settings.start_date,
    };
    let to = settings.end_date.unwrap_or(today);
    (from <= to).then_some(Position {
        from,
        to,
        day: from,
        page_token: None,
        resumed: false,
    })
}

/// The cursor after the page at `position` was read, whose next-page token is `next`, and the position after it
/// (None when the pass is complete).
pub fn advance(
    cursor: &ConnectorCursor,
    position: &Position,
    next: Option<String>,
    now_ms: i64,
) -> (ConnectorCursor, Option<Position>) {
    let mut after = ConnectorCursor {
        updated_at: now_ms,
        ..cursor.clone()
    };
    let following = match next {
        Some(token) => Some(Position {
            page_token: Some(token),
            ..position.clone()
        }),
        None => position
            .day
            .succ_opt()
            .filter(|day| *day <= position.to)
            .map(|day| Position {
                day,
                page_token: None,
                ..position.clone()
            }),
    };
    match &following {
        Some(p) => {
            after.pass_from = Some(p.from.to_string());
            after.pass_to = Some(p.to.to_string());
            after.next_day = Some(p.day.to_string());
            after.page_token = p.page_token.clone();
        }
        None => {
            after.synced_through = Some(position.to.to_string());
            after.pass_from = None;
            after.pass_to = None;
            after.next_day = None;
            after.page_token = None;
        }
    }
    (after, following)
}

/// Why an account's sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading from the platform failed.
    #[error("{platform} account {account}: {source}")]
    Source {
        /// Platform slug.
        platform: &'static str,
        /// Account.
        account: String,
        /// Cause.
        #[source]
        source: SourceError,
    },
    /// Writing to Kafka failed.
    #[error("{platform} account {account}: {source}")]
    Sink {
        /// Platform slug.
        platform: &'static str,
        /// Account.
        account: String,
        /// Cause.
        #[source]
        source: SinkError,
    },
}

impl SyncError {
    /// Whether the next pass may succeed unchanged (throttling, outages, an aborted transaction); otherwise the
    /// connector must stop (bad credentials, a refusal, a fenced producer, an unknown commit outcome).
    pub fn is_retriable(&self) -> bool {
        match self {
            SyncError::Source { source, .. } => source.is_retriable(),
            SyncError::Sink { source, .. } => matches!(source, SinkError::Aborted(_)),
        }
    }
}

/// What one pass over one account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// The account.
    pub account: String,
    /// First and last day of the pass; None when there was nothing to read.
    pub days: Option<(NaiveDate, NaiveDate)>,
    /// Whether it continued an interrupted pass.
    pub resumed: bool,
    /// Pages committed.
    pub pages: u64,
    /// Report rows committed.
    pub rows: u64,
    /// Malformed rows (and campaign entries) dead-lettered.
    pub dead_letters: u64,
    /// Campaigns written by the entity sync.
    pub campaigns: u64,
    /// Creatives (ads) written by the entity sync.
    pub creatives: u64,
}

/// What one entity sync wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityCounts {
    /// Campaigns.
    campaigns: u64,
    /// Creatives.
    creatives: u64,
    /// Malformed entries dead-lettered.
    dead_letters: u64,
}

/// The records of `entities`; the malformed ones are logged and added to `dead`.
fn valid<T>(entities: Vec<Entity<T>>, dead: &mut Vec<DeadRow>) -> Vec<T> {
    let mut records = Vec::new();
    for entity in entities {
        match entity {
            Entity::Record(record) => records.push(*record),
            Entity::Malformed { raw, reason } => {
                tracing::warn!(%reason, "malformed entity entry, dead-lettered");
                dead.push(DeadRow { raw, reason });
            }
        }
    }
    records
}

/// One platform's connector: its source, its sink and the accounts' cursors.
pub struct Connector<S> {
    source: S,
    sink: KafkaSink,
    accounts: Vec<Account>,
    settings: SyncSettings,
    cursors: HashMap<String, ConnectorCursor>,
}

impl<S: ReportSource> Connector<S> {
    /// A connector that resumes from the committed cursors in `sink`'s cursor topic.
    pub async fn resume(
        source: S,
        sink: KafkaSink,
        accounts: Vec<Account>,
        settings: SyncSettings,
    ) -> Result<Connector<S>, SinkError> {
        let cursors = sink.read_cursors(source.platform()).await?;
        Ok(Connector {
            source,
            sink,
            accounts,
            settings,
            cursors,
        })
    }

    /// One pass over every account; an account that fails does not stop the others.
    pub async fn sync_pass(&mut self) -> Vec<Result<AccountSummary, SyncError>> {
        let mut outcomes = Vec::new();
        for account in self.accounts.clone() {
            let span = tracing::info_span!(
                "sync",
                platform = self.source.platform().slug(),
                account = %account.id
            );
            outcomes.push(self.sync_account(&account).instrument(span).await);
        }
        outcomes
    }

    /// Entity sync of one account: every campaign and ad, in one transaction.
    async fn sync_entities(&mut self, account: &Account) -> Result<EntityCounts, SyncError> {
        let platform = self.source.platform();
        let source_error = |source| SyncError::Source {
            platform: platform.slug(),
            account: account.id.clone(),
            source,
        };
        let mut attempt = 1;
        loop {
            let mut dead = Vec::new();
            let campaigns = valid(
                self.source
                    .fetch_campaigns(account)
                    .await
                    .map_err(source_error)?,
                &mut dead,
            );
            let creatives = valid(
                self.source
                    .fetch_creatives(account)
                    .await
                    .map_err(source_error)?,
                &mut dead,
            );
            let correlation_id = format!("{}/{}/entities", platform.slug(), account.id);
            let entities = Entities {
                campaigns: &campaigns,
                creatives: &creatives,
                dead: &dead,
            };
            let written = tokio::task::block_in_place(|| {
                self.sink
                    .commit_entities(platform, &account.id, &entities, &correlation_id)
            });
            match written {
                Ok(()) => {
                    let counts = EntityCounts {
                        campaigns: campaigns.len() as u64,
                        creatives: creatives.len() as u64,
                        dead_letters: dead.len() as u64,
                    };
                    tracing::info!(?counts, "entities committed");
                    return Ok(counts);
                }
                Err(SinkError::Aborted(reason)) if attempt < ABORTED_PAGE_ATTEMPTS => {
                    tracing::warn!(attempt, %reason, "entities transaction aborted, listing them again");
                    attempt += 1;
                }
                Err(source) => {
                    return Err(SyncError::Sink {
                        platform: platform.slug(),
                        account: account.id.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// One pass over one account: its entities, then its report days page by page from where its cursor is.
    async fn sync_account(&mut self, account: &Account) -> Result<AccountSummary, SyncError> {
        let platform = self.source.platform();
        let today = chrono::Utc::now()
            .with_timezone(&account.time_zone)
            .date_naive();
        let mut cursor =
            self.cursors
                .get(&account.id)
                .cloned()
                .unwrap_or_else(|| ConnectorCursor {
                    platform,
                    account_id: account.id.clone(),
                    synced_through: None,
                    pass_from: None,
                    pass_to: None,
                    next_day: None,
                    page_token: None,
                    updated_at: 0,
                });
        let entities = self.sync_entities(account).await?;
        let mut summary = AccountSummary {
            account: account.id.clone(),
            days: None,
            resumed: false,
            pages: 0,
            rows: 0,
            dead_letters: entities.dead_letters,
            campaigns: entities.campaigns,
            creatives: entities.creatives,
        };
        let Some(mut position) =
            next_position(self.cursors.get(&account.id), &self.settings, today)
        else {
            return Ok(summary);
        };
        summary.days = Some((position.from, position.to));
        summary.resumed = position.resumed;
        tracing::info!(from = %position.from, to = %position.to, day = %position.day, resumed = position.resumed, "sync pass");
        loop {
            let page = self.sync_page(account, &cursor, &position).await?;
            summary.pages += 1;
            summary.rows += page.rows as u64;
            summary.dead_letters += page.dead_letters as u64;
            tracing::info!(
                day = %position.day,
                page = position.page_token.as_deref().unwrap_or("first"),
                rows = page.rows,
                dead_letters = page.dead_letters,
                "page committed"
            );
            cursor = page.cursor;
            self.cursors.insert(account.id.clone(), cursor.clone());
            match page.following {
                Some(next) => position = next,
                None => return Ok(summary),
            }
        }
    }

    /// Reads the page at `position` and commits it with the cursor after it; a page whose transaction was aborted
    /// is read and written again.
    async fn sync_page(
        &mut self,
        account: &Account,
        cursor: &ConnectorCursor,
        position: &Position,
    ) -> Result<CommittedPage, SyncError> {
        let platform = self.source.platform();
        let mut attempt = 1;
        loop {
            let page: Page = self
                .source
                .fetch_page(account, position.day, position.page_token.as_deref())
                .await
                .map_err(|source| SyncError::Source {
                    platform: platform.slug(),
                    account: account.id.clone(),
                    source,
                })?;
            let (next_cursor, following) = advance(
                cursor,
                position,
                page.next,
                chrono::Utc::now().timestamp_millis(),
            );
            let mut reports = Vec::new();
            let mut dead = Vec::new();
            for row in page.rows {
                match row {
                    Row::Report(report) => reports.push(report),
                    Row::Malformed { raw, reason } => {
                        tracing::warn!(day = %position.day, %reason, "malformed row, dead-lettered");
                        dead.push(DeadRow { raw, reason });
                    }
                }
            }
            let correlation_id = format!(
                "{}/{}/{}/{}",
                platform.slug(),
                account.id,
                position.day,
                position.page_token.as_deref().unwrap_or("first")
            );
            let write = PageWrite {
                reports: &reports,
                dead: &dead,
                cursor: &next_cursor,
                correlation_id: &correlation_id,
            };
            match tokio::task::block_in_place(|| self.sink.commit_page(&write)) {
                Ok(()) => {
                    return Ok(CommittedPage {
                        rows: reports.len(),
                        dead_letters: dead.len(),
                        cursor: next_cursor,
                        following,
                    })
                }
                Err(SinkError::Aborted(reason)) if attempt < ABORTED_PAGE_ATTEMPTS => {
                    tracing::warn!(attempt, %reason, "page transaction aborted, reading the page again");
                    attempt += 1;
                }
                Err(source) => {
                    return Err(SyncError::Sink {
                        platform: platform.slug(),
                        account: account.id.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// A page committed with its cursor.
struct CommittedPage {
    /// Report rows written.
    rows: usize,
    /// Malformed rows dead-lettered.
    dead_letters: usize,
    /// The account's cursor after the page.
    cursor: ConnectorCursor,
    /// The next page's position; None when the pass is complete.
    following: Option<Position>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use adstream_schemas::events::Platform;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    fn empty() -> ConnectorCursor {
        ConnectorCursor {
            platform: Platform::Meta,
            account_id: "1".into(),
            synced_through: None,
            pass_from: None,
            pass_to: None,
            next_day: None,
            page_token: None,
            updated_at: 0,
        }
    }

    #[test]
    fn passes_start_at_the_start_date_then_re_read_the_look_back() {
        let settings = SyncSettings {
            start_date: day("2024-04-01"),
            end_date: None,
            lookback_days: 7,
        };
        let first = next_position(None, &settings, day("2024-05-03")).expect("a pass");
        assert_eq!(
            (first.from, first.to, first.day),
            (day("2024-04-01"), day("2024-05-03"), day("2024-04-01"))
        );
        let synced = ConnectorCursor {
            synced_through: Some("2024-05-03".into()),
            ..empty()
        };
        let later = next_position(Some(&synced), &settings, day("2024-05-05")).expect("a pass");
        assert_eq!(
            (later.from, later.to),
            (day("2024-04-27"), day("2024-05-05"))
        );
        let no_lookback = SyncSettings {
            lookback_days: 0,
            end_date: Some(day("2024-05-03")),
            ..settings
        };
        assert_eq!(
            next_position(Some(&synced), &no_lookback, day("2024-05-05")),
            None
        );
    }

    #[test]
    fn the_cursor_moves_page_by_page_day_by_day_and_resumes_where_it_stopped() {
        let settings = SyncSettings {
            start_date: day("2024-05-01"),
            end_date: Some(day("2024-05-02")),
            lookback_days: 7,
        };
        let start = next_position(None, &settings, day("2024-06-01")).expect("a pass");
        let (c1, p1) = advance(&empty(), &start, Some("AFTER1".into()), 1);
        let p1 = p1.expect("same day, next page");
        assert_eq!(
            (p1.day, p1.page_token.as_deref()),
            (day("2024-05-01"), Some("AFTER1"))
        );
        assert_eq!(
            next_position(Some(&c1), &settings, day("2024-06-01")),
            Some(Position {
                resumed: true,
                ..p1.clone()
            })
        );
        let (c2, p2) = advance(&c1, &p1, None, 2);
        let p2 = p2.expect("next day");
        assert_eq!(
            (p2.day, p2.page_token.as_deref()),
            (day("2024-05-02"), None)
        );
        assert_eq!(c2.next_day.as_deref(), Some("2024-05-02"));
        let (c3, p3) = advance(&c2, &p2, None, 3);
        assert_eq!(p3, None);
        assert_eq!(
            (
                c3.synced_through.as_deref(),
                c3.next_day.as_deref(),
                c3.updated_at
            ),
            (Some("2024-05-02"), None, 3)
        );
    }
}
