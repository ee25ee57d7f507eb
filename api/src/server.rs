//! The HTTP server: GraphQL over HTTP (`POST /graphql`) and WebSocket (`GET /graphql/ws`, `graphql-transport-ws`
//! or the older `graphql-ws`), Server-Sent Events (`GET /events/campaign-metrics|alerts|creative-fatigue`),
//! `/healthz`, `/readyz` and the dashboard (`/`).
//!
//! Authentication is a bearer token: `Authorization: Bearer <token>` on any request; a WebSocket may instead send
//! `{"authorization": "Bearer <token>"}` as its `connection_init` payload and an SSE stream `?access_token=<token>`
//! (browsers' WebSocket and EventSource cannot set headers). A request without a valid token gets 401; a WebSocket
//! whose `connection_init` carries none is closed with 4403. The dashboard's files carry no data and are public.
//!
//! Limits ([`ApiLimits`]): request body size; depth and complexity per operation; WebSockets and SSE streams
//! together at most `max_streams` (503 beyond); WebSocket messages and buffers (a client's message at most the body
//! limit, a 4 KiB read buffer, a write buffer of at most 1 MiB); subscriptions per WebSocket; a subscriber that falls
//! `client_buffer` updates behind is dropped; a WebSocket that does not take a message within `send_timeout` is
//! closed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_graphql::http::{WebSocket as GraphQLWebSocket, WebSocketProtocols, WsMessage};
use async_graphql::Data;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{info, info_span, warn, Instrument};

use crate::graphql::{change_stream, schema, ApiSchema, Slots};
use crate::materialise::{self, MaterialiseError};
use crate::model::{MinSeverity, WindowGranularity};
use crate::settings::{ApiLimits, ApiSettings};
use crate::store::{Change, Hub};

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("{0}")]
    Settings(String),
    /// The source topics cannot be read.
    #[error(transparent)]
    Materialise(#[from] MaterialiseError),
    /// The server failed while serving.
    #[error("the API server failed: {0}")]
    Serve(std::io::Error),
}

/// What every handler shares.
struct App {
    schema: ApiSchema,
    hub: Arc<Hub>,
    tokens: Vec<String>,
    limits: ApiLimits,
    streams: Arc<Semaphore>,
    ids: AtomicU64,
}

impl App {
    fn token_valid(&self, token: &str) -> bool {
        // Every token is compared, in constant time each, so timing tells nothing about which one nearly matched.
        self.tokens.iter().fold(false, |found, t| {
            found | bool::from(t.as_bytes().ct_eq(token.as_bytes()))
        })
    }

    /// Whether `headers` carry a valid bearer token; None when they carry no Authorization header.
    fn header_auth(&self, headers: &HeaderMap) -> Option<bool> {
        let value = headers.get(header::AUTHORIZATION)?;
        Some(bearer(value.to_str().unwrap_or("")).is_some_and(|token| self.token_valid(token)))
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A streaming connection's permit, or None when `max_streams` are open.
    fn stream_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }
}

fn too_many_streams() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "too many streaming connections: try again later",
    )
        .into_response()
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Read buffer of a WebSocket connection (a client sends little: `subscribe`, `complete`, `pong`).
const WS_READ_BUFFER: usize = 4 << 10;
/// Most a WebSocket's write buffer may hold; messages are written out one at a time within the send timeout.
const WS_MAX_WRITE_BUFFER: usize = 1 << 20;

/// What an unauthenticated client is told.
const TOKEN_REQUIRED: &str = "a valid bearer token is required";

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        TOKEN_REQUIRED,
    )
        .into_response()
}

/// A bound API server, not serving yet.
pub struct Server {
    listener: TcpListener,
    settings: ApiSettings,
}

impl Server {
    /// Checks the settings and binds the listen address.
    pub async fn bind(settings: ApiSettings) -> Result<Server, ApiError> {
        if settings.tokens.iter().all(|t| t.is_empty()) {
            return Err(ApiError::Settings(
                "no bearer token: give at least one (a token file or ADSTREAM_API_TOKEN)"
                    .to_owned(),
            ));
        }
        cors(&settings.cors_origins)?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ApiError::Bind {
                    address: settings.listen,
                    source,
                })?;
        Ok(Server { listener, settings })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    /// Starts materialising the sources and serves until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ApiError> {
        serve(self.listener, self.settings, shutdown).await
    }
}

/// Materialises the sources of `settings` and serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    settings: ApiSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let limits = settings.limits;
    let hub = Arc::new(Hub::new(limits.alert_history, limits.client_buffer));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = materialise::spawn(
        &settings.sources,
        &settings.kafka,
        &settings.registry,
        hub.clone(),
        tokio::runtime::Handle::current(),
        stop.clone(),
    )?;
    let app = Arc::new(App {
        schema: schema(hub.clone(), &limits),
        hub,
        tokens: settings
            .tokens
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect(),
        limits,
        streams: Arc::new(Semaphore::new(limits.max_streams)),
        ids: AtomicU64::new(0),
    });
    let router = router(app, &settings.cors_origins)?;
    info!(address = %listener.local_addr().map_err(ApiError::Serve)?, "serving the API");
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ApiError::Serve);
    stop.store(true, Ordering::Relaxed);
    // The reader notices within one poll; its thread holds no state anyone waits for.
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    served
}

fn cors(origins: &[String]) -> Result<Option<CorsLayer>, ApiError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o)
                    .map_err(|_| ApiError::Settings(format!("invalid CORS origin '{o}'")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    ))
}

fn router(app: Arc<App>, origins: &[String]) -> Result<Router, ApiError> {
    let limit = app.limits.max_body_bytes;
    let router = Router::new()
        .route("/graphql", post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        .route("/events/campaign-metrics", get(sse_metrics))
        .route("/events/alerts", get(sse_alerts))
        .route("/events/creative-fatigue", get(sse_fatigue))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(crate::dashboard::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app);
    Ok(match cors(origins)? {
        Some(layer) => router.layer(layer),
        None => router,
    })
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.hub.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "catching up with the source topics",
        )
            .into_response()
    }
}

async fn graphql_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if app.header_auth(&headers) != Some(true) {
        return unauthorized();
    }
    let request = match graphql_request(&body) {
        Ok(request) => request,
        Err(problem) => {
            let message = format!("the body is not a GraphQL request: {problem}");
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "errors": [{ "message": message }] })),
            )
                .into_response();
        }
    };
    let span = info_span!("graphql", request = app.next_id());
    let response = app.schema.execute(request).instrument(span).await;
    Json(response).into_response()
}

/// A GraphQL-over-HTTP request body: a JSON object with a string `query`. async-graphql's `Request` alone would
/// also take `[]` or `{}` (every field has a default) and answer 200 with a syntax error for an empty query.
fn graphql_request(body: &[u8]) -> Result<async_graphql::Request, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    match value.get("query") {
        Some(serde_json::Value::String(_)) => {}
        Some(_) => return Err("`query` must be a string".into()),
        None if value.is_object() => return Err("`query` is required".into()),
        None => return Err("it must be a JSON object".into()),
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

async fn graphql_ws(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let preauthorized = match app.header_auth(&headers) {
        Some(false) => return unauthorized(),
        Some(true) => true,
        None => false,
    };
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // graphql-transport-ws when offered, else the older graphql-ws (clients often offer both).
    let mut protocols: Vec<WebSocketProtocols> = offered
        .split(',')
        .filter_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
        .collect();
    protocols.sort_by_key(|p| *p != WebSocketProtocols::GraphQLWS);
    let Some(&protocol) = protocols.first() else {
        return (
            StatusCode::BAD_REQUEST,
            "offer the graphql-transport-ws (or graphql-ws) WebSocket subprotocol",
        )
            .into_response();
    };
    let Some(permit) = app.stream_permit() else {
        return too_many_streams();
    };
    let id = app.next_id();
    let max_message = app.limits.max_body_bytes;
    upgrade
        .protocols([protocol.sec_websocket_protocol()])
        // Per-connection buffers: small, and bounded (the defaults are 128 KiB each way and 64 MiB messages).
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            serve_socket(app, socket, protocol, preauthorized, permit)
                .instrument(info_span!("ws", connection = id))
        })
}

/// The init payload's token: `{"authorization": "Bearer <token>"}` (also `Authorization`).
fn init_token(payload: &serde_json::Value) -> Option<&str> {
    let value = payload
        .get("authorization")
        .or_else(|| payload.get("Authorization"))?
        .as_str()?;
    bearer(value)
}

async fn serve_socket(
    app: Arc<App>,
    socket: WebSocket,
    protocol: WebSocketProtocols,
    preauthorized: bool,
    permit: OwnedSemaphorePermit,
) {
    let (mut sink, stream) = socket.split();
    // The input ends at an error or at the client's Close frame; the server then closes too.
    let input = stream
        .take_while(|message| {
            futures::future::ready(matches!(message, Ok(m) if !matches!(m, Message::Close(_))))
        })
        .filter_map(|message| {
            futures::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let mut data = Data::default();
    data.insert(Slots::default());
    let checker = app.clone();
    let mut outgoing = GraphQLWebSocket::new(app.schema.clone(), input, protocol)
        .connection_data(data)
        .on_connection_init(move |payload| async move {
            if preauthorized || init_token(&payload).is_some_and(|t| checker.token_valid(t)) {
                Ok(Data::default())
            } else {
                Err(async_graphql::Error::new(
                    "a valid bearer token is required",
                ))
            }
        });
    info!("connected");
    let send_timeout = app.limits.send_timeout;
    while let Some(message) = outgoing.next().await {
        let message = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            // graphql-transport-ws closes an unauthorized connection with 4403 Forbidden.
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code: if reason == TOKEN_REQUIRED { 4403 } else { code },
                reason: reason.into(),
            })),
        };
        match tokio::time::timeout(send_timeout, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                warn!(
                    timeout_ms = send_timeout.as_millis() as u64,
                    "client too slow to take a message: closing"
                );
                break;
            }
        }
    }
    // The closing handshake's reply, or a close of our own; a client that does not take it is not waited for.
    let _ = tokio::time::timeout(send_timeout, sink.close()).await;
    drop(permit);
    info!("disconnected");
}

/// Query parameters of the SSE streams.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamParams {
    /// The bearer token, for clients that cannot set headers (EventSource).
    access_token: Option<String>,
    /// Comma-separated campaign ids; all when absent.
    campaign_ids: Option<String>,
    /// `HOURLY` or `DAILY` (metrics only); both when absent.
    granularity: Option<WindowGranularity>,
    /// `LOW`, `MEDIUM`, `HIGH` or `CRITICAL` (alerts only; `INFO` and `WARNING` are `LOW` and `MEDIUM`); `LOW`
    /// when absent.
    min_severity: Option<MinSeverity>,
}

impl StreamParams {
    fn campaigns(&self) -> Option<Vec<String>> {
        self.campaign_ids.as_ref().map(|ids| {
            ids.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }
}

/// An SSE response of what `pick` takes from the changes, after the auth check and a stream permit.
fn sse<F>(
    app: &App,
    headers: &HeaderMap,
    params: &StreamParams,
    name: &'static str,
    pick: F,
) -> Response
where
    F: Fn(&Change) -> Option<Event> + Send + Sync + 'static,
{
    let authorized = match app.header_auth(headers) {
        Some(valid) => valid,
        None => params
            .access_token
            .as_deref()
            .is_some_and(|t| app.token_valid(t)),
    };
    if !authorized {
        return unauthorized();
    }
    let Some(permit) = app.stream_permit() else {
        return too_many_streams();
    };
    let span = info_span!("sse", stream = name, connection = app.next_id());
    span.in_scope(|| info!("connected"));
    let events = change_stream(&app.hub, Some((permit, span)), pick).map(|item| {
        Ok::<Event, Infallible>(match item {
            Ok(event) => event,
            Err(error) => Event::default().event("error").data(error.message),
        })
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn json_event<T: serde::Serialize>(name: &'static str, value: &T) -> Option<Event> {
    Event::default().event(name).json_data(value).ok()
}

async fn sse_metrics(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Response {
    let campaigns = params.campaigns();
    let granularity = params.granularity;
    sse(
        &app,
        &headers,
        &params,
        "campaign-metrics",
        move |change| match change {
            Change::Metrics(row)
                if campaigns
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&row.campaign_id))
                    && granularity.is_none_or(|g| g.symbol() == row.granularity) =>
            {
                json_event("campaignMetricsUpdated", row.as_ref())
            }
            _ => None,
        },
    )
}

async fn sse_alerts(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Response {
    let campaigns = params.campaigns();
    let min = params.min_severity.unwrap_or(MinSeverity::Low);
    sse(
        &app,
        &headers,
        &params,
        "alerts",
        move |change| match change {
            Change::Alert(alert, Some(level))
                if min.admits(*level)
                    && campaigns
                        .as_ref()
                        .is_none_or(|ids| ids.contains(&alert.campaign_id)) =>
            {
                json_event("alertChanged", alert.as_ref())
            }
            _ => None,
        },
    )
}

async fn sse_fatigue(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Response {
    let campaigns = params.campaigns();
    sse(
        &app,
        &headers,
        &params,
        "creative-fatigue",
        move |change| match change {
            Change::Fatigue(fatigue)
                if campaigns
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&fatigue.campaign_id)) =>
            {
                json_event("creativeFatigueChanged", fatigue.as_ref())
            }
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graphql_body_must_be_an_object_with_a_string_query() {
        assert!(graphql_request(br#"{"query": "{ campaigns { campaignId } }"}"#).is_ok());
        for body in [&b"[]"[..], b"{}", br#"{"query": 1}"#, b"\xff{", b"null"] {
            assert!(graphql_request(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header_and_the_init_payload() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
        let payload = serde_json::json!({ "authorization": "Bearer t0k" });
        assert_eq!(init_token(&payload), Some("t0k"));
        assert_eq!(init_token(&serde_json::json!({ "token": "t0k" })), None);
    }

    #[test]
    fn cors_accepts_any_or_a_list_and_refuses_a_bad_origin() {
        assert!(cors(&[]).expect("none").is_none());
        assert!(cors(&["*".to_owned()]).expect("any").is_some());
        assert!(cors(&["http://localhost:3000".to_owned()])
            .expect("list")
            .is_some());
        assert!(cors(&["bad\norigin".to_owned()]).is_err());
    }
}
