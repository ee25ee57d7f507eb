//! `SET` and `RESET`, held per connection.
//!
//! One DataFusion `SessionContext` serves every connection, so a `SET` that reached it (`datafusion.*` options: batch
//! size, memory limit, spill directory, SQL dialect, information_schema) would change the server for everyone. Only
//! the session settings Postgres clients send are accepted, and they are kept in the connection's metadata, where
//! datafusion-postgres' `SHOW` and the result encoder read them; anything else is refused, `datafusion.*` with
//! Postgres' `42501` as a parameter a user may not set.

use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, Reset, Set, Statement, Value};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::ParameterStatus;
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::QueryHook;

/// Postgres' SQLSTATE for a parameter the user may not set.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// Postgres' SQLSTATE for an unknown parameter.
pub const UNDEFINED_OBJECT: &str = "42704";
/// Postgres' SQLSTATE for a value a parameter does not take.
pub const INVALID_PARAMETER_VALUE: &str = "22023";

/// The metadata key datafusion-postgres reads the statement timeout from (in milliseconds), for `SHOW`.
pub const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";
/// The metadata key datafusion-postgres reads the time zone from, for `SHOW TIME ZONE`.
const TIME_ZONE_KEY: &str = "timezone";

/// The settings a session may change, as Postgres names them (lower case), with the name Postgres reports them
/// under in a `ParameterStatus` message when it does. They change how results are formatted or nothing at all;
/// clients (psql, psycopg, JDBC, BI tools) send them on connect and fail if refused.
const SESSION_SETTINGS: [(&str, Option<&str>); 17] = [
    ("application_name", Some("application_name")),
    ("bytea_output", None),
    ("client_encoding", Some("client_encoding")),
    ("client_min_messages", None),
    ("datestyle", Some("DateStyle")),
    (
        "default_transaction_read_only",
        Some("default_transaction_read_only"),
    ),
    ("extra_float_digits", None),
    ("idle_in_transaction_session_timeout", None),
    ("intervalstyle", Some("IntervalStyle")),
    ("lc_messages", None),
    ("lock_timeout", None),
    ("search_path", None),
    (
        "standard_conforming_strings",
        Some("standard_conforming_strings"),
    ),
    ("statement_timeout", None),
    ("timezone", Some("TimeZone")),
    ("transaction_isolation", None),
    ("transaction_read_only", None),
];

/// The statement timeout the session set, if any: `SET statement_timeout` (`0` turns it off).
pub fn statement_timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get(STATEMENT_TIMEOUT_KEY)
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

/// Why a `SET` or `RESET` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingRefusal {
    /// A DataFusion option: those are the server's, shared by every connection.
    #[error(
        "permission denied to set parameter \"{0}\": DataFusion options are server-wide and fixed when the server \
         starts; a session may set only Postgres session settings such as statement_timeout, TimeZone or DateStyle"
    )]
    ServerOption(String),
    /// A name that is no session setting this server knows.
    #[error("unrecognized configuration parameter \"{0}\"")]
    Unknown(String),
    /// A value the setting does not take.
    #[error("invalid value for parameter \"{name}\": \"{value}\"")]
    InvalidValue {
        /// The setting.
        name: String,
        /// The value given.
        value: String,
    },
    /// A form of `SET` that is not about session settings (`SET ROLE`, `SET SESSION AUTHORIZATION`, ...).
    #[error("{0} is not supported: the adstream SQL server has one user and no roles")]
    Unsupported(String),
}

impl SettingRefusal {
    fn into_pg_error(self) -> PgWireError {
        let code = match self {
            SettingRefusal::ServerOption(_) | SettingRefusal::Unsupported(_) => {
                INSUFFICIENT_PRIVILEGE
            }
            SettingRefusal::Unknown(_) => UNDEFINED_OBJECT,
            SettingRefusal::InvalidValue { .. } => INVALID_PARAMETER_VALUE,
        };
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            code.to_string(),
            self.to_string(),
        )))
    }
}

/// What a `SET` or `RESET` does to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// Store `value` under `name` (an allowed setting).
    Assign { name: String, value: String },
    /// Forget `name`, or every session setting when `None`.
    Reset(Option<String>),
    /// Accepted and without effect: transaction modes (the server only reads anyway).
    Nothing,
}

/// Reads a `SET`/`RESET` statement as a change of session settings; `None` for other statements.
fn change_of(statement: &Statement) -> Option<Result<Change, SettingRefusal>> {
    match statement {
        Statement::Set(set) => Some(set_change(set)),
        Statement::Reset(reset) => Some(match &reset.reset {
            Reset::ALL => Ok(Change::Reset(None)),
            Reset::ConfigurationParameter(name) => {
                allowed_name(&name.to_string()).map(|name| Change::Reset(Some(name)))
            }
        }),
        _ => None,
    }
}

fn set_change(set: &Set) -> Result<Change, SettingRefusal> {
    match set {
        Set::SingleAssignment {
            hivevar: false,
            variable,
            values,
            ..
        } => {
            let name = allowed_name(&variable.to_string())?;
            let value = values.iter().map(value_text).collect::<Vec<_>>().join(", ");
            assign(name, value)
        }
        Set::SetTimeZone { value, .. } => assign("timezone".to_string(), value_text(value)),
        Set::SetNames { charset_name, .. } => {
            assign("client_encoding".to_string(), charset_name.value.clone())
        }
        Set::SetTransaction { .. } => Ok(Change::Nothing),
        other => Err(SettingRefusal::Unsupported(
            other
                .to_string()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        )),
    }
}

/// The lower-case name of an allowed setting, else why it is refused.
fn allowed_name(name: &str) -> Result<String, SettingRefusal> {
    let lower = name.trim_matches('"').to_ascii_lowercase();
    if SESSION_SETTINGS
        .iter()
        .any(|(allowed, _)| *allowed == lower)
    {
        Ok(lower)
    } else if lower.starts_with("datafusion.") {
        Err(SettingRefusal::ServerOption(lower))
    } else {
        Err(SettingRefusal::Unknown(lower))
    }
}

/// The text of a value as Postgres takes it: a quoted string without its quotes, a name or number as written.
fn value_text(value: &Expr) -> String {
    match value {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) | Value::DoubleQuotedString(text) => text.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

/// Checks a value where a wrong one would mislead the client or change behaviour.
fn assign(name: String, value: String) -> Result<Change, SettingRefusal> {
    let invalid = || SettingRefusal::InvalidValue {
        name: name.clone(),
        value: value.clone(),
    };
    let value = match name.as_str() {
        // Results are encoded in UTF-8 only.
        "client_encoding" => {
            let normalized = value.replace(['-', '_'], "").to_ascii_uppercase();
            if normalized != "UTF8" && normalized != "UNICODE" {
                return Err(invalid());
            }
            "UTF8".to_string()
        }
        "statement_timeout" => milliseconds(&value).ok_or_else(invalid)?.to_string(),
        // The server only reads: a session may say so, not the opposite.
        "default_transaction_read_only" | "transaction_read_only" => {
            if !matches!(
                value.to_ascii_lowercase().as_str(),
                "on" | "true" | "yes" | "1"
            ) {
                return Err(invalid());
            }
            "on".to_string()
        }
        _ => value,
    };
    Ok(Change::Assign { name, value })
}

/// Postgres' reading of a time setting: a number of milliseconds, or a number with a unit.
fn milliseconds(value: &str) -> Option<u64> {
    let value = value.trim();
    let digits_end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let number: u64 = value[..digits_end].parse().ok()?;
    let factor = match value[digits_end..].trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Applies `change` to the connection's metadata and reports reported settings back, as Postgres does.
async fn apply(client: &mut dyn HookClient, change: Change) -> PgWireResult<Response> {
    match change {
        Change::Assign { name, value } => {
            let key = metadata_key(&name);
            client.metadata_mut().insert(key.to_string(), value.clone());
            if let Some(reported) = reported_name(&name) {
                client
                    .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                        reported.to_string(),
                        value,
                    )))
                    .await?;
            }
            Ok(Response::Execution(Tag::new("SET")))
        }
        Change::Reset(name) => {
            let names: Vec<&str> = match &name {
                Some(name) => vec![name.as_str()],
                None => SESSION_SETTINGS.iter().map(|(name, _)| *name).collect(),
            };
            for name in names {
                client.metadata_mut().remove(metadata_key(name));
            }
            Ok(Response::Execution(Tag::new("RESET")))
        }
        Change::Nothing => Ok(Response::Execution(Tag::new("SET"))),
    }
}

fn metadata_key(name: &str) -> &str {
    match name {
        "statement_timeout" => STATEMENT_TIMEOUT_KEY,
        "timezone" => TIME_ZONE_KEY,
        other => other,
    }
}

fn reported_name(name: &str) -> Option<&'static str> {
    SESSION_SETTINGS
        .iter()
        .find(|(allowed, _)| *allowed == name)
        .and_then(|(_, reported)| *reported)
}

fn refused(statement: &Statement, refusal: SettingRefusal) -> PgWireError {
    tracing::warn!(sql = %statement, "refused: {refusal}");
    refusal.into_pg_error()
}

/// Answers `SET` and `RESET` from the allow list, before any other hook could hand them to DataFusion.
#[derive(Debug)]
pub struct SessionSettingsHook;

#[async_trait]
impl QueryHook for SessionSettingsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let change = change_of(statement)?;
        Some(match change {
            Ok(change) => apply(client, change).await,
            Err(refusal) => Err(refused(statement, refusal)),
        })
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let change = change_of(statement)?;
        // Refused at Parse already; an accepted one returns no rows, which an empty plan describes.
        Some(match change {
            Ok(_) => Ok(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: std::sync::Arc::new(DFSchema::empty()),
            })),
            Err(refusal) => Err(refused(statement, refusal)),
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let change = change_of(statement)?;
        Some(match change {
            Ok(change) => apply(client, change).await,
            Err(refusal) => Err(refused(statement, refusal)),
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    use super::*;

    fn change(sql: &str) -> Result<Change, SettingRefusal> {
        let statements = match PostgresCompatibilityParser::new().parse(sql) {
            Ok(statements) => statements,
            Err(error) => panic!("{sql}: {error}"),
        };
        match change_of(&statements[0]) {
            Some(change) => change,
            None => panic!("{sql} is no SET or RESET"),
        }
    }

    fn assigned(name: &str, value: &str) -> Result<Change, SettingRefusal> {
        Ok(Change::Assign {
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    #[test]
    fn session_settings_are_accepted() {
        assert_eq!(
            change("SET DateStyle TO 'ISO, MDY'"),
            assigned("datestyle", "ISO, MDY")
        );
        assert_eq!(change("SET TIME ZONE 'UTC'"), assigned("timezone", "UTC"));
        assert_eq!(
            change("SET timezone = 'Europe/Paris'"),
            assigned("timezone", "Europe/Paris")
        );
        assert_eq!(
            change("SET search_path = public"),
            assigned("search_path", "public")
        );
        assert_eq!(
            change("SET application_name = 'psql'"),
            assigned("application_name", "psql")
        );
        assert_eq!(
            change("SET extra_float_digits = 3"),
            assigned("extra_float_digits", "3")
        );
        assert_eq!(
            change("SET client_encoding TO 'utf-8'"),
            assigned("client_encoding", "UTF8")
        );
        assert_eq!(
            change("SET NAMES 'UTF8'"),
            assigned("client_encoding", "UTF8")
        );
        assert_eq!(
            change("SET SESSION statement_timeout = '1s'"),
            assigned("statement_timeout", "1000")
        );
        assert_eq!(
            change("SET statement_timeout = 250"),
            assigned("statement_timeout", "250")
        );
        assert_eq!(
            change("SET statement_timeout TO '2min'"),
            assigned("statement_timeout", "120000")
        );
        assert_eq!(
            change("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
            Ok(Change::Nothing)
        );
        assert_eq!(
            change("RESET statement_timeout"),
            Ok(Change::Reset(Some("statement_timeout".to_string())))
        );
        assert_eq!(change("RESET ALL"), Ok(Change::Reset(None)));
    }

    #[test]
    fn datafusion_options_are_refused() {
        for sql in [
            "SET datafusion.sql_parser.dialect = 'mysql'",
            "SET datafusion.execution.batch_size = 1",
            "SET datafusion.runtime.memory_limit = '1G'",
            "SET datafusion.catalog.information_schema = false",
            "RESET datafusion.execution.batch_size",
        ] {
            assert!(
                matches!(change(sql), Err(SettingRefusal::ServerOption(_))),
                "{sql}"
            );
        }
    }

    #[test]
    fn unknown_settings_roles_and_bad_values_are_refused() {
        assert!(matches!(
            change("SET work_mem = '1GB'"),
            Err(SettingRefusal::Unknown(_))
        ));
        assert!(matches!(
            change("SET ROLE postgres"),
            Err(SettingRefusal::Unsupported(_))
        ));
        assert!(matches!(
            change("SET SESSION AUTHORIZATION postgres"),
            Err(SettingRefusal::Unsupported(_))
        ));
        assert!(matches!(
            change("SET client_encoding = 'LATIN1'"),
            Err(SettingRefusal::InvalidValue { .. })
        ));
        assert!(matches!(
            change("SET statement_timeout = 'soon'"),
            Err(SettingRefusal::InvalidValue { .. })
        ));
    }
}
