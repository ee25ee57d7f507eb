//! The REST API, shaped like Confluent Schema Registry's: same paths, parameters, bodies, status and error codes.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State as AxumState};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use adstream_schemas::compat::CompatibilityLevel;

use super::errors::ApiError;
use super::limits;
use super::records::{Record, SchemaReference};
use super::state::{
    parse_level, Candidate, CompatCheck, Explicit, Filter, Mode, RegisterPlan, State, Verdict,
    VersionEntry, VersionSpec,
};
use super::store::Store;

/// The content type of every answer, Confluent's v1 API type.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What the handlers share.
pub(crate) struct Registry {
    /// Read by every request; written only by the holder of `store`.
    state: RwLock<State>,
    /// The writer: holding it serializes writes, so ids and versions are assigned without races.
    store: tokio::sync::Mutex<Store>,
}

type App = Arc<Registry>;
type ApiResult = Result<Response, ApiError>;

impl Registry {
    /// A registry serving `state` and writing through `store`.
    pub fn new(state: State, store: Store) -> Registry {
        Registry {
            state: RwLock::new(state),
            store: tokio::sync::Mutex::new(store),
        }
    }

    // A panic while holding the lock cannot leave the state half-applied (apply does not panic on input), so a
    // poisoned lock is still safe to use.
    fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes records one by one, applying each to the state once the broker has acknowledged it.
    async fn commit(&self, store: &Store, records: &[Record]) -> Result<(), ApiError> {
        for record in records {
            store.write(record).await?;
            self.state
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(record);
        }
        Ok(())
    }
}

/// The router of the whole API.
pub(crate) fn router(registry: Registry) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/contexts", get(contexts))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas", get(list_schemas))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_by_id))
        .route("/schemas/ids/{id}/referencedby", get(referenced_by_id))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(Arc::new(registry))
}

// ----- extraction ---------------------------------------------------------------------------------------------------

/// Path parameters, percent-decoded (`a%2Fb` is the subject `a/b`); a rejection answers in Confluent's format.
struct P<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(P(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// Query parameters. Booleans are read as Java's `Boolean.parseBoolean` does (`true` in any case), because the
/// Python client sends `True`/`False`.
struct Q(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Q {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Query(map)) => Ok(Q(map)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

impl Q {
    fn flag(&self, names: &[&str]) -> bool {
        names.iter().any(|n| {
            self.0
                .get(*n)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        })
    }

    fn text(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// `deleted` / `deletedOnly` (the Python client spells it `deleted_only`).
    fn filter(&self) -> Filter {
        if self.flag(&["deletedOnly", "deleted_only"]) {
            Filter::DeletedOnly
        } else if self.flag(&["deleted"]) {
            Filter::IncludeDeleted
        } else {
            Filter::Live
        }
    }

    /// `offset` / `limit` paging; a missing or negative limit means all.
    fn page<T>(&self, items: Vec<T>) -> Vec<T> {
        let offset = self
            .0
            .get("offset")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let limit = self
            .0
            .get("limit")
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|l| *l > 0);
        let items = items.into_iter().skip(offset);
        match limit {
            Some(limit) => items
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .collect(),
            None => items.collect(),
        }
    }
}

/// The raw request body, at most [`limits::MAX_REQUEST_BYTES`]; a larger one is refused with a JSON 413 like every
/// other error (axum's own rejection is plain text, which Confluent clients cannot read).
struct Body(Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let too_large = ApiError::body_too_large(limits::MAX_REQUEST_BYTES);
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > limits::MAX_DRAINED_BYTES) {
            return Err(too_large);
        }
        let mut chunks = request.into_body().into_data_stream();
        let mut body = Vec::new();
        let mut received = 0usize;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("Cannot read the request body: {e}")))?;
            received = received.saturating_add(chunk.len());
            if received <= limits::MAX_REQUEST_BYTES {
                body.extend_from_slice(&chunk);
            } else if received > limits::MAX_DRAINED_BYTES {
                break;
            } else {
                // Past the limit: keep reading so the client gets to read the answer, but keep nothing.
                body = Vec::new();
            }
        }
        if received > limits::MAX_REQUEST_BYTES {
            return Err(too_large);
        }
        Ok(Body(Bytes::from(body)))
    }
}

/// Parses a JSON request body whatever its content type (Confluent's, plain JSON, or none at all).
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON request body: {e}")))
}

fn json(value: impl Serialize) -> ApiResult {
    let text = serde_json::to_string(&value)
        .map_err(|e| ApiError::store(format!("cannot encode the answer: {e}")))?;
    Ok(raw(text))
}

fn raw(text: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

// ----- bodies -------------------------------------------------------------------------------------------------------

/// A schema in a request: registration, lookup and compatibility checks.
#[derive(Deserialize)]
struct SchemaRequest {
    schema: Option<String>,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    references: Option<Vec<SchemaReference>>,
    /// IMPORT mode only; Confluent treats a negative id as "not given".
    id: Option<i64>,
    /// IMPORT mode (or the next version); 0 and negative mean "not given".
    version: Option<i64>,
}

impl SchemaRequest {
    /// The Avro schema of the request, its references resolved against `state`; other types, unknown references,
    /// unparsable schemas and unions nested too widely are refused with 42201.
    fn candidate(&self, state: &State) -> Result<Candidate, ApiError> {
        if let Some(kind) = self
            .schema_type
            .as_deref()
            .filter(|t| !t.eq_ignore_ascii_case("AVRO"))
        {
            return Err(ApiError::invalid_schema(format!(
                "Invalid schema: schema type {kind} is not supported; this registry supports AVRO only"
            )));
        }
        let references = self.references.as_deref().unwrap_or_default();
        let (references, referenced) = state.resolve_references(references)?;
        let candidate = Candidate::parse_with_references(
            self.schema.as_deref().unwrap_or_default(),
            references,
            &referenced,
        )?;
        candidate.ensure_union_fanout_within_limit()?;
        Ok(candidate)
    }

    fn explicit(&self) -> Result<Explicit, ApiError> {
        let id = match self.id.filter(|id| *id >= 0) {
            None => None,
            // The range itself is checked when planning; this only keeps the number representable.
            Some(id) => Some(u32::try_from(id).map_err(|_| {
                ApiError::not_permitted(format!(
                    "schema id {id} is out of range: ids are 1 to {}",
                    limits::MAX_SCHEMA_ID
                ))
            })?),
        };
        let version = match self.version.filter(|v| *v > 0) {
            None => None,
            Some(v) => {
                Some(i32::try_from(v).map_err(|_| ApiError::invalid_version(&v.to_string()))?)
            }
        };
        Ok(Explicit { id, version })
    }
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

#[derive(Deserialize)]
struct ModeRequest {
    mode: Option<String>,
}

/// A subject version as Confluent answers it.
#[derive(Serialize)]
struct SubjectVersion<'a> {
    subject: &'a str,
    version: i32,
    id: u32,
    #[serde(rename = "schemaType", skip_serializing_if = "Option::is_none")]
    schema_type: Option<&'a str>,
    /// Confluent omits references when there are none.
    #[serde(skip_serializing_if = "<[SchemaReference]>::is_empty")]
    references: &'a [SchemaReference],
    schema: &'a str,
}

fn subject_version<'a>(
    state: &'a State,
    subject: &'a str,
    version: i32,
    entry: VersionEntry,
) -> Result<SubjectVersion<'a>, ApiError> {
    let stored = state.schema(entry.id).ok_or_else(|| {
        ApiError::store(format!(
            "version {version} of '{subject}' has no schema for id {}",
            entry.id
        ))
    })?;
    Ok(SubjectVersion {
        subject,
        version,
        id: entry.id,
        schema_type: stored.schema_type.as_deref(),
        references: &stored.references,
        schema: &stored.text,
    })
}

// ----- handlers -----------------------------------------------------------------------------------------------------

async fn root() -> ApiResult {
    json(serde_json::json!({}))
}

async fn contexts() -> ApiResult {
    json(["."])
}

async fn schema_types() -> ApiResult {
    json(["AVRO"])
}

async fn list_subjects(AxumState(app): AxumState<App>, q: Q) -> ApiResult {
    let subjects = app.state().subjects(q.text("subjectPrefix"), q.filter());
    json(q.page(subjects))
}

async fn list_versions(AxumState(app): AxumState<App>, P(subject): P<String>, q: Q) -> ApiResult {
    let versions = app.state().versions(&subject, q.filter())?;
    json(q.page(versions))
}

async fn lookup(
    AxumState(app): AxumState<App>,
    P(subject): P<String>,
    q: Q,
    Body(bytes): Body,
) -> ApiResult {
    let request: SchemaRequest = body(&bytes)?;
    let include_deleted = q.flag(&["deleted"]);
    let filter = if include_deleted {
        Filter::IncludeDeleted
    } else {
        Filter::Live
    };
    // Subject first, as Confluent: an unknown subject is 40401 even for an invalid schema.
    app.state().versions(&subject, filter)?;
    let state = app.state();
    let candidate = request.candidate(&state)?;
    let (version, _) = state.lookup(&subject, &candidate, include_deleted)?;
    let (_, entry) = state.version(&subject, VersionSpec::Number(version), true)?;
    json(subject_version(&state, &subject, version, entry)?)
}

/// Registration runs its compatibility check twice at most, never under the state lock: first without the writer
/// lock, so that a slow check holds up neither readers nor other writers; then, under the writer lock, the plan is
/// made again and the verdict used if what it compared against is unchanged, else the check runs once more (the
/// writer lock keeps the state from changing then). Ids are only assigned under the writer lock, so one schema
/// still gets one id whatever registrations race.
async fn register(
    AxumState(app): AxumState<App>,
    P(subject): P<String>,
    Body(bytes): Body,
) -> ApiResult {
    let request: SchemaRequest = body(&bytes)?;
    let explicit = request.explicit()?;
    let (candidate, first_plan) = {
        let state = app.state();
        state.ensure_writable(&subject)?;
        let candidate = request.candidate(&state)?;
        let plan = state.plan_register(&subject, &candidate, explicit, None)?;
        (candidate, plan)
    };
    let mut verdict = match first_plan {
        RegisterPlan::Check(check) => Some(run_check(check, &candidate).await?),
        _ => None,
    };
    let store = app.store.lock().await;
    loop {
        let plan = app
            .state()
            .plan_register(&subject, &candidate, explicit, verdict.as_ref())?;
        match plan {
            RegisterPlan::Check(check) => verdict = Some(run_check(check, &candidate).await?),
            RegisterPlan::Existing { id, .. } => return json(serde_json::json!({ "id": id })),
            RegisterPlan::New {
                id,
                version,
                record,
            } => {
                app.commit(&store, std::slice::from_ref(&record)).await?;
                tracing::info!(subject, version, id, "registered a schema");
                return json(serde_json::json!({ "id": id }));
            }
        }
    }
}

/// Runs a compatibility check on the blocking pool: a check of wide unions takes long, and must hold up neither the
/// async workers (which answer every other request) nor any lock.
async fn run_check(check: CompatCheck, candidate: &Candidate) -> Result<Verdict, ApiError> {
    let schema = candidate.parsed.clone();
    tokio::task::spawn_blocking(move || check.run(&schema))
        .await
        .map_err(|error| {
            tracing::error!(%error, "a compatibility check failed");
            ApiError::store("the compatibility check failed")
        })
}

async fn delete_subject(AxumState(app): AxumState<App>, P(subject): P<String>, q: Q) -> ApiResult {
    let permanent = q.flag(&["permanent"]);
    let store = app.store.lock().await;
    let (versions, records) = app.state().plan_delete_subject(&subject, permanent)?;
    app.commit(&store, &records).await?;
    tracing::info!(subject, permanent, ?versions, "deleted a subject");
    json(versions)
}

async fn get_version(
    AxumState(app): AxumState<App>,
    P((subject, version)): P<(String, String)>,
    q: Q,
) -> ApiResult {
    let spec = VersionSpec::from_str(&version)?;
    let state = app.state();
    let (version, entry) = state.version(&subject, spec, q.flag(&["deleted"]))?;
    json(subject_version(&state, &subject, version, entry)?)
}

async fn get_version_schema(
    AxumState(app): AxumState<App>,
    P((subject, version)): P<(String, String)>,
    q: Q,
) -> ApiResult {
    let spec = VersionSpec::from_str(&version)?;
    let state = app.state();
    let (version, entry) = state.version(&subject, spec, q.flag(&["deleted"]))?;
    Ok(raw(subject_version(&state, &subject, version, entry)?
        .schema
        .to_owned()))
}

async fn referenced_by(
    AxumState(app): AxumState<App>,
    P((subject, version)): P<(String, String)>,
) -> ApiResult {
    let spec = VersionSpec::from_str(&version)?;
    let state = app.state();
    let (version, _) = state.version(&subject, spec, false)?;
    json(state.referenced_by(&subject, version))
}

async fn delete_version(
    AxumState(app): AxumState<App>,
    P((subject, version)): P<(String, String)>,
    q: Q,
) -> ApiResult {
    let spec = VersionSpec::from_str(&version)?;
    let permanent = q.flag(&["permanent"]);
    let store = app.store.lock().await;
    let (version, records) = app.state().plan_delete_version(&subject, spec, permanent)?;
    app.commit(&store, &records).await?;
    tracing::info!(subject, version, permanent, "deleted a version");
    json(version)
}

async fn list_schemas(AxumState(app): AxumState<App>, q: Q) -> ApiResult {
    let state = app.state();
    let all = state.all_versions(
        q.text("subjectPrefix"),
        q.flag(&["deleted"]),
        q.flag(&["latestOnly"]),
    );
    let mut out = Vec::with_capacity(all.len());
    for (subject, version, entry) in &all {
        out.push(subject_version(&state, subject, *version, *entry)?);
    }
    json(q.page(out))
}

fn parse_id(id: &str) -> Result<u32, ApiError> {
    id.parse().map_err(|_| ApiError::schema_id_not_found(id))
}

async fn schema_by_id(AxumState(app): AxumState<App>, P(id): P<String>) -> ApiResult {
    let state = app.state();
    let stored = state
        .schema(parse_id(&id)?)
        .ok_or_else(|| ApiError::schema_id_not_found(&id))?;
    // Confluent names the type only when it is not Avro, and lists references only when there are some.
    let mut answer = serde_json::Map::new();
    if let Some(kind) = &stored.schema_type {
        answer.insert("schemaType".into(), kind.clone().into());
    }
    if !stored.references.is_empty() {
        let references = serde_json::to_value(&stored.references)
            .map_err(|e| ApiError::store(format!("cannot encode the answer: {e}")))?;
        answer.insert("references".into(), references);
    }
    answer.insert("schema".into(), stored.text.clone().into());
    json(answer)
}

async fn referenced_by_id(AxumState(app): AxumState<App>, P(id): P<String>) -> ApiResult {
    let state = app.state();
    let numeric = parse_id(&id)?;
    state
        .schema(numeric)
        .ok_or_else(|| ApiError::schema_id_not_found(&id))?;
    json(state.referenced_by_id(numeric))
}

async fn raw_schema_by_id(AxumState(app): AxumState<App>, P(id): P<String>) -> ApiResult {
    let state = app.state();
    let stored = state
        .schema(parse_id(&id)?)
        .ok_or_else(|| ApiError::schema_id_not_found(&id))?;
    Ok(raw(stored.text.clone()))
}

async fn subjects_by_id(AxumState(app): AxumState<App>, P(id): P<String>, q: Q) -> ApiResult {
    let state = app.state();
    let numeric = parse_id(&id)?;
    state
        .schema(numeric)
        .ok_or_else(|| ApiError::schema_id_not_found(&id))?;
    json(q.page(state.subjects_of(numeric, q.flag(&["deleted"]))))
}

async fn versions_by_id(AxumState(app): AxumState<App>, P(id): P<String>, q: Q) -> ApiResult {
    let state = app.state();
    let numeric = parse_id(&id)?;
    state
        .schema(numeric)
        .ok_or_else(|| ApiError::schema_id_not_found(&id))?;
    let usages: Vec<serde_json::Value> = state
        .usages(numeric, q.flag(&["deleted"]))
        .into_iter()
        .map(|(subject, version)| serde_json::json!({ "subject": subject, "version": version }))
        .collect();
    json(q.page(usages))
}

fn verdict(reasons: Vec<String>, verbose: bool) -> ApiResult {
    if verbose {
        json(serde_json::json!({ "is_compatible": reasons.is_empty(), "messages": reasons }))
    } else {
        json(serde_json::json!({ "is_compatible": reasons.is_empty() }))
    }
}

/// Against every live version the subject's level requires (the latest one, or all for transitive levels); a
/// subject without live versions accepts anything.
async fn check_all(
    AxumState(app): AxumState<App>,
    P(subject): P<String>,
    q: Q,
    Body(bytes): Body,
) -> ApiResult {
    let request: SchemaRequest = body(&bytes)?;
    let (candidate, check) = {
        let state = app.state();
        let candidate = request.candidate(&state)?;
        let check = state.compat_check(&subject, None);
        (candidate, check)
    };
    let reasons = run_check(check, &candidate).await?.reasons;
    verdict(reasons, q.flag(&["verbose"]))
}

/// Against one version; `latest` of a subject without live versions accepts anything, as Confluent.
async fn check_version(
    AxumState(app): AxumState<App>,
    P((subject, version)): P<(String, String)>,
    q: Q,
    Body(bytes): Body,
) -> ApiResult {
    let spec = VersionSpec::from_str(&version)?;
    let request: SchemaRequest = body(&bytes)?;
    let (candidate, check) = {
        let state = app.state();
        let target = match (state.version(&subject, spec, false), spec) {
            (Ok((version, _)), _) => Some(version),
            (Err(e), VersionSpec::Latest) if e.code == 40401 => None,
            (Err(e), _) => return Err(e),
        };
        let candidate = request.candidate(&state)?;
        let check = target.map(|version| state.compat_check(&subject, Some(version)));
        (candidate, check)
    };
    let reasons = match check {
        Some(check) => run_check(check, &candidate).await?.reasons,
        None => Vec::new(),
    };
    verdict(reasons, q.flag(&["verbose"]))
}

/// The level of a config body: Confluent's `compatibility`, or `compatibilityLevel` as its answers spell it.
fn level_of(request: &ConfigRequest) -> Result<CompatibilityLevel, ApiError> {
    let text = request
        .compatibility
        .as_deref()
        .or(request.compatibility_level.as_deref())
        .unwrap_or("");
    parse_level(text)
}

async fn get_global_config(AxumState(app): AxumState<App>) -> ApiResult {
    let level = app.state().global_level().unwrap_or_default();
    json(serde_json::json!({ "compatibilityLevel": level.to_string() }))
}

async fn put_global_config(AxumState(app): AxumState<App>, Body(bytes): Body) -> ApiResult {
    let level = level_of(&body(&bytes)?)?;
    let store = app.store.lock().await;
    app.commit(&store, &[State::config_record(None, Some(level))])
        .await?;
    json(serde_json::json!({ "compatibility": level.to_string() }))
}

async fn delete_global_config(AxumState(app): AxumState<App>) -> ApiResult {
    let store = app.store.lock().await;
    let previous = app.state().global_level();
    if previous.is_some() {
        app.commit(&store, &[State::config_record(None, None)])
            .await?;
    }
    json(serde_json::json!({ "compatibilityLevel": previous.unwrap_or_default().to_string() }))
}

async fn get_subject_config(
    AxumState(app): AxumState<App>,
    P(subject): P<String>,
    q: Q,
) -> ApiResult {
    let state = app.state();
    let level = match state.subject_level(&subject) {
        Some(level) => level,
        None if q.flag(&["defaultToGlobal"]) => state.effective_level(&subject),
        None => {
            return Err(ApiError::subject_level_compatibility_not_configured(
                &subject,
            ))
        }
    };
    json(serde_json::json!({ "compatibilityLevel": level.to_string() }))
}

async fn put_subject_config(
    AxumState(app): AxumState<App>,
    P(subject): P<String>,
    Body(bytes): Body,
) -> ApiResult {
    let level = level_of(&body(&bytes)?)?;
    let store = app.store.lock().await;
    app.commit(&store, &[State::config_record(Some(&subject), Some(level))])
        .await?;
    json(serde_json::json!({ "compatibility": level.to_string() }))
}

async fn delete_subject_config(AxumState(app): AxumState<App>, P(subject): P<String>) -> ApiResult {
    let store = app.store.lock().await;
    let previous = app
        .state()
        .subject_level(&subject)
        .ok_or_else(|| ApiError::subject_level_compatibility_not_configured(&subject))?;
    app.commit(&store, &[State::config_record(Some(&subject), None)])
        .await?;
    json(serde_json::json!({ "compatibilityLevel": previous.to_string() }))
}

fn mode_of(bytes: &Bytes) -> Result<Mode, ApiError> {
    let request: ModeRequest = body(bytes)?;
    let text = request.mode.unwrap_or_default();
    Mode::from_str(&text)
}

async fn get_global_mode(AxumState(app): AxumState<App>) -> ApiResult {
    let mode = app.state().global_mode().unwrap_or(Mode::ReadWrite);
    json(serde_json::json!({ "mode": mode }))
}

async fn put_global_mode(AxumState(app): AxumState<App>, q: Q, Body(bytes): Body) -> ApiResult {
    let mode = mode_of(&bytes)?;
    let store = app.store.lock().await;
    let record = app
        .state()
        .plan_mode(None, Some(mode), q.flag(&["force"]))?;
    app.commit(&store, &[record]).await?;
    json(serde_json::json!({ "mode": mode }))
}

async fn get_subject_mode(
    AxumState(app): AxumState<App>,
    P(subject): P<String>,
    q: Q,
) -> ApiResult {
    let state = app.state();
    let mode = match state.subject_mode(&subject) {
        Some(mode) => mode,
        None if q.flag(&["defaultToGlobal"]) => state.effective_mode(&subject),
        None => return Err(ApiError::subject_level_mode_not_configured(&subject)),
    };
    json(serde_json::json!({ "mode": mode }))
}

async fn put_subject_mode(
    AxumState(app): AxumState<App>,
    P(subject): P<String>,
    q: Q,
    Body(bytes): Body,
) -> ApiResult {
    let mode = mode_of(&bytes)?;
    let store = app.store.lock().await;
    let record = app
        .state()
        .plan_mode(Some(&subject), Some(mode), q.flag(&["force"]))?;
    app.commit(&store, &[record]).await?;
    json(serde_json::json!({ "mode": mode }))
}

async fn delete_subject_mode(AxumState(app): AxumState<App>, P(subject): P<String>) -> ApiResult {
    let store = app.store.lock().await;
    let previous = app
        .state()
        .subject_mode(&subject)
        .ok_or_else(|| ApiError::subject_level_mode_not_configured(&subject))?;
    let record = app.state().plan_mode(Some(&subject), None, false)?;
    app.commit(&store, &[record]).await?;
    json(serde_json::json!({ "mode": previous }))
}
