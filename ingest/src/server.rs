//! The HTTP server: `POST /events` (any of the three CloudEvents modes), `GET /healthz`, `GET /readyz`,
//! `GET /metrics` (Prometheus text).
//!
//! Answers to `POST /events`:
//!
//! | status | when | body |
//! |---|---|---|
//! | 202 | every new event of the request is acknowledged by the broker (`acks=all`) | `{"accepted": n, "duplicates": d}` |
//! | 400 | an event is not a valid CloudEvent or its data not a valid record (nothing produced) | `{"error", "events": [{index, id, path, reason}]}` |
//! | 401 | no valid `Authorization: Bearer` token | `{"error"}` |
//! | 408 | the request took longer than the request timeout | |
//! | 409 | an event of the request is being produced by another request right now | `{"error"}`, `Retry-After` |
//! | 413 | the body or the batch is over its limit | `{"error"}` |
//! | 415 | not a CloudEvent (content type) | `{"error"}` |
//! | 503 | too many requests at once, or the broker failed or did not answer in time | `{"error"}`, `Retry-After` |
//!
//! A 503 after producing started means the outcome is unknown for some events: the client sends the same
//! request again, and whatever the broker did take is then acknowledged as a duplicate, not written twice.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use adstream_producers::producer::{
    cloudevent_headers, producer_config, CloudEventAttributes, ProduceError, SchemaRegistrar,
    TopicSchema, WireEncoder,
};
use adstream_schemas::events::{AdClick, AdImpression, AvroRecord, Conversion};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;
use tracing::{info, info_span, warn, Instrument};

use crate::cloudevents::{read_request, Rejection, RequestError};
use crate::decode::{decode, EventKind, IngestEvent, IngestRecord};
use crate::recent::{Claim, EventKey, RecentIds};
use crate::settings::{IngestLimits, IngestSettings};

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The Kafka producer could not be created (usually a bad librdkafka property).
    #[error("invalid Kafka client configuration: {0}")]
    KafkaConfig(#[source] KafkaError),
    /// The broker did not answer a metadata request in time.
    #[error("cannot reach Kafka at {bootstrap}: {source}")]
    Unreachable {
        /// The configured bootstrap servers.
        bootstrap: String,
        /// What librdkafka reported.
        #[source]
        source: KafkaError,
    },
    /// A topic events go to does not exist.
    #[error("topic '{0}' does not exist (run `adstream topology apply` first)")]
    MissingTopic(String),
    /// The registry refused or could not serve a contract schema.
    #[error(transparent)]
    Registry(#[from] ProduceError),
    /// No token was configured: the endpoint would be open to anyone.
    #[error("no bearer token configured")]
    NoToken,
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Serving stopped on an I/O error.
    #[error("serving HTTP failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Producer properties the endpoint sets unless the user's config has them: a short linger, since a client waits
/// for the acknowledgement (the generator's 20 ms linger is for throughput).
const INGEST_PRODUCER_DEFAULTS: [(&str, &str); 1] = [("linger.ms", "2")];
/// How long to wait before enqueueing again when librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);
/// The longest `X-Correlation-Id` taken from a client; a longer or unprintable one is replaced by the event id.
const MAX_CORRELATION_ID: usize = 128;

/// A bound server, ready to run.
pub struct IngestServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    ingest: Arc<Ingest>,
}

/// What every request shares.
struct Ingest {
    producer: FutureProducer,
    /// The registered schema of each kind's topic, in [`EventKind::ALL`]'s order.
    schemas: [TopicSchema; 3],
    recent: Mutex<RecentIds>,
    tokens: Vec<String>,
    limits: IngestLimits,
    requests: Semaphore,
    metrics: Metrics,
}

impl IngestServer {
    /// Creates the producer, checks that the broker answers and the topics exist, registers (or looks up) the
    /// contract's schemas under the topics' subjects, and binds the listen address.
    pub async fn bind(settings: IngestSettings) -> Result<IngestServer, IngestError> {
        if settings.tokens.is_empty() {
            return Err(IngestError::NoToken);
        }
        let mut config = producer_config(&settings.kafka);
        for (key, value) in INGEST_PRODUCER_DEFAULTS {
            if settings.kafka.get(key).is_none() {
                config.set(key, value);
            }
        }
        let producer: FutureProducer = config.create().map_err(IngestError::KafkaConfig)?;
        let timeout = settings.limits.ack_timeout;
        let metadata = {
            let client = producer.client();
            tokio::task::block_in_place(|| client.fetch_metadata(None, timeout))
        }
        .map_err(|source| IngestError::Unreachable {
            bootstrap: settings
                .kafka
                .get("bootstrap.servers")
                .unwrap_or_default()
                .to_owned(),
            source,
        })?;
        let topics = &settings.topics;
        for topic in [&topics.impressions, &topics.clicks, &topics.conversions] {
            let exists = metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none());
            if !exists {
                return Err(IngestError::MissingTopic(topic.clone()));
            }
        }
        let registrar = SchemaRegistrar::new(&settings.registry, timeout)?;
        let schemas = [
            registrar
                .topic_schema::<AdImpression>(&topics.impressions)
                .await?,
            registrar.topic_schema::<AdClick>(&topics.clicks).await?,
            registrar
                .topic_schema::<Conversion>(&topics.conversions)
                .await?,
        ];
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| IngestError::Bind {
                    address: settings.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| IngestError::Bind {
            address: settings.listen,
            source,
        })?;
        let limits = settings.limits;
        Ok(IngestServer {
            listener,
            local_addr,
            ingest: Arc::new(Ingest {
                producer,
                schemas,
                recent: Mutex::new(RecentIds::new(
                    limits.idempotency_window,
                    limits.idempotency_capacity,
                )),
                tokens: settings.tokens,
                limits,
                requests: Semaphore::new(limits.max_concurrent_requests),
                metrics: Metrics::default(),
            }),
        })
    }

    /// The bound address (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then lets requests in progress finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), IngestError> {
        let limits = self.ingest.limits;
        let app = Router::new()
            .route("/events", post(post_events))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ready" }))
            .route("/metrics", get(metrics))
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                limits.request_timeout,
            ))
            .with_state(Arc::clone(&self.ingest));
        info!(address = %self.local_addr, "ingest endpoint listening");
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(IngestError::Serve)
    }
}

impl Ingest {
    /// Whether `headers` carry one of the configured tokens (`Authorization: Bearer <token>`).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().as_bytes())
        else {
            return false;
        };
        // Every token is compared, each in constant time, so timing does not tell which one nearly matched.
        self.tokens.iter().fold(false, |found, known| {
            found | bool::from(known.as_bytes().ct_eq(token))
        })
    }

    fn recent(&self) -> MutexGuard<'_, RecentIds> {
        // A panic while holding the lock cannot leave the window inconsistent in a way that matters more than
        // refusing every later request would: keep serving with what it holds.
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn schema(&self, kind: EventKind) -> &TopicSchema {
        &self.schemas[kind.index()]
    }
}

/// `POST /events`.
async fn post_events(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let response = accept(&ingest, &headers, body).await;
    ingest.metrics.answered(response.status());
    response
}

async fn accept(
    ingest: &Arc<Ingest>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !ingest.authorized(headers) {
        let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let Ok(_permit) = ingest.requests.try_acquire() else {
        return retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in progress: try again",
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), &rejection.body_text()),
    };
    let received = match read_request(headers, &body, ingest.limits.max_batch_events) {
        Ok(events) => events,
        Err(RequestError::UnsupportedMediaType(reason)) => {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &reason)
        }
        Err(too_many @ RequestError::TooManyEvents { .. }) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, &too_many.to_string())
        }
        Err(RequestError::Invalid(rejections)) => return invalid(ingest, rejections),
    };
    let mut events = Vec::with_capacity(received.len());
    let mut rejections = Vec::new();
    for (index, event) in received.into_iter().enumerate() {
        match decode(index, event) {
            Ok(event) => events.push(event),
            Err(rejection) => rejections.push(rejection),
        }
    }
    if !rejections.is_empty() {
        return invalid(ingest, rejections);
    }
    let correlation_id = headers
        .get("x-correlation-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= MAX_CORRELATION_ID)
        .map(str::to_owned);
    let span = info_span!(
        "ingest",
        correlation_id = correlation_id.as_deref().unwrap_or(events[0].record.id()),
        events = events.len()
    );
    produce(ingest, events, correlation_id)
        .instrument(span)
        .await
}

/// Claims the request's events in the idempotency window, produces the new ones and answers once the broker has
/// acknowledged them all (or failed, or not answered within the ack timeout).
async fn produce(
    ingest: &Arc<Ingest>,
    events: Vec<IngestEvent>,
    correlation_id: Option<String>,
) -> Response {
    let started = Instant::now();
    let total = events.len();
    let mut claimed: Vec<(EventKey, IngestEvent)> = Vec::with_capacity(total);
    {
        let mut recent = ingest.recent();
        let mut in_request = HashSet::with_capacity(total);
        let mut conflict = false;
        for event in events {
            let key = recent.key(&event.source, event.record.id());
            // The same event twice in one request: the second copy is a duplicate of the first.
            if !in_request.insert(key) {
                continue;
            }
            match recent.claim(key, started) {
                Claim::New => claimed.push((key, event)),
                Claim::Duplicate => {}
                Claim::InFlight => conflict = true,
            }
        }
        if conflict {
            for (key, _) in &claimed {
                recent.release(*key);
            }
            drop(recent);
            return retry_later(
                StatusCode::CONFLICT,
                "an event of this request is being produced by another request: retry it",
            );
        }
    }
    let duplicates = (total - claimed.len()) as u64;
    let deadline = started + ingest.limits.ack_timeout;
    let mut deliveries = Vec::with_capacity(claimed.len());
    let mut failure = None;
    match encode(ingest, &claimed) {
        Err(encode_error) => failure = Some(encode_error),
        Ok(payloads) => {
            for ((_, event), payload) in claimed.iter().zip(&payloads) {
                match enqueue(ingest, event, payload, correlation_id.as_deref(), deadline).await {
                    Ok(delivery) => deliveries.push(delivery),
                    Err(enqueue_error) => {
                        failure = Some(enqueue_error);
                        break;
                    }
                }
            }
        }
    }
    if let Some(failure) = failure {
        // What was enqueued is settled by its delivery report; the claims of the rest go back now.
        let mut recent = ingest.recent();
        for (key, _) in &claimed[deliveries.len()..] {
            recent.release(*key);
        }
        drop(recent);
        warn!(%failure, "cannot produce an event");
        settle(ingest, claimed, deliveries);
        return retry_later(StatusCode::SERVICE_UNAVAILABLE, &failure);
    }
    let produced = deliveries.len() as u64;
    let outcome = settle(ingest, claimed, deliveries);
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining, outcome).await {
        Ok(Ok(failed)) if failed.is_empty() => {
            ingest.metrics.accepted(produced, duplicates, started.elapsed());
            (
                StatusCode::ACCEPTED,
                Json(json!({ "accepted": produced, "duplicates": duplicates })),
            )
                .into_response()
        }
        Ok(Ok(failed)) => {
            warn!(failed = failed.len(), first = %failed[0], "the broker refused events");
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the broker did not take {} event(s) ({}): retry the request",
                    failed.len(),
                    failed[0]
                ),
            )
        }
        Ok(Err(join_error)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("delivery tracking failed: {join_error}"),
        ),
        Err(_) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker did not acknowledge in time; the outcome is unknown: retry the request (events it \
             already took are then acknowledged as duplicates)",
        ),
    }
}

/// Encodes every claimed event into Confluent's wire format (one encoder per kind, built once per request).
fn encode(ingest: &Ingest, claimed: &[(EventKey, IngestEvent)]) -> Result<Vec<Vec<u8>>, String> {
    let mut encoders: [Option<WireEncoder<'_>>; 3] = [None, None, None];
    let mut payloads = Vec::with_capacity(claimed.len());
    for (_, event) in claimed {
        let kind = event.record.kind();
        let encoder = match &mut encoders[kind.index()] {
            Some(encoder) => encoder,
            empty => {
                empty.insert(WireEncoder::new(ingest.schema(kind)).map_err(|e| e.to_string())?)
            }
        };
        let mut payload = Vec::new();
        match &event.record {
            IngestRecord::Impression(record) => encoder.encode(record, &mut payload),
            IngestRecord::Click(record) => encoder.encode(record, &mut payload),
            IngestRecord::Conversion(record) => encoder.encode(record, &mut payload),
        }
        .map_err(|e| e.to_string())?;
        payloads.push(payload);
    }
    Ok(payloads)
}

/// Hands one encoded event to librdkafka, waiting while its queue is full (until `deadline`).
async fn enqueue(
    ingest: &Ingest,
    event: &IngestEvent,
    payload: &[u8],
    correlation_id: Option<&str>,
    deadline: Instant,
) -> Result<DeliveryFuture, String> {
    let (key, time_ms) = match &event.record {
        IngestRecord::Impression(r) => (r.key(), r.event_time_ms()),
        IngestRecord::Click(r) => (r.key(), r.event_time_ms()),
        IngestRecord::Conversion(r) => (r.key(), r.event_time_ms()),
    };
    let kind = event.record.kind();
    let topic = ingest.schema(kind).topic.as_str();
    let id = event.record.id();
    loop {
        let headers = cloudevent_headers(&CloudEventAttributes {
            id,
            ce_type: kind.ce_type(),
            source: &event.source,
            time_ms,
            correlation_id: correlation_id.unwrap_or(id),
        });
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .timestamp(time_ms)
            .headers(headers);
        match ingest.producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
            }
            Err((error, _)) => return Err(format!("cannot enqueue event {id}: {error}")),
        }
    }
}

/// Waits (in a task of its own, so a client that gives up cannot leave claims dangling) for every delivery report
/// and settles the claims: acknowledged ones are remembered, failed ones released for a retry. The task's output
/// is the failures' descriptions.
fn settle(
    ingest: &Arc<Ingest>,
    claimed: Vec<(EventKey, IngestEvent)>,
    deliveries: Vec<DeliveryFuture>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let ingest = Arc::clone(ingest);
    tokio::spawn(async move {
        let reports = futures::future::join_all(deliveries).await;
        let now = Instant::now();
        let mut failed = Vec::new();
        let mut recent = ingest.recent();
        for ((key, event), report) in claimed.iter().zip(reports) {
            match report {
                Ok(Ok(_)) => recent.accepted(*key, now),
                Ok(Err((error, _))) => {
                    recent.release(*key);
                    failed.push(format!("{}: {error}", event.record.id()));
                }
                Err(_canceled) => {
                    recent.release(*key);
                    failed.push(format!("{}: producer closed", event.record.id()));
                }
            }
        }
        ingest
            .metrics
            .evictions
            .store(recent.evictions(), Ordering::Relaxed);
        failed
    })
}

fn invalid(ingest: &Ingest, rejections: Vec<Rejection>) -> Response {
    ingest
        .metrics
        .rejected
        .fetch_add(rejections.len() as u64, Ordering::Relaxed);
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "invalid event(s): nothing was accepted", "events": rejections })),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn retry_later(status: StatusCode, message: &str) -> Response {
    let mut response = error(status, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Metrics {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    evictions: AtomicU64,
    ack_micros: AtomicU64,
    acked_requests: AtomicU64,
    answers: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    fn answered(&self, status: StatusCode) {
        if let Ok(mut answers) = self.answers.lock() {
            *answers.entry(status.as_u16()).or_default() += 1;
        }
    }

    fn accepted(&self, produced: u64, duplicates: u64, took: Duration) {
        self.accepted.fetch_add(produced, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        self.ack_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.acked_requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// `GET /metrics`: Prometheus text exposition.
async fn metrics(State(ingest): State<Arc<Ingest>>) -> Response {
    let m = &ingest.metrics;
    let mut text = String::new();
    text.push_str("# HELP adstream_ingest_events_total Events received, by outcome.\n");
    text.push_str("# TYPE adstream_ingest_events_total counter\n");
    for (outcome, counter) in [
        ("accepted", &m.accepted),
        ("duplicate", &m.duplicates),
        ("rejected", &m.rejected),
    ] {
        text.push_str(&format!(
            "adstream_ingest_events_total{{outcome=\"{outcome}\"}} {}\n",
            counter.load(Ordering::Relaxed)
        ));
    }
    text.push_str("# HELP adstream_ingest_requests_total Requests answered, by HTTP status.\n");
    text.push_str("# TYPE adstream_ingest_requests_total counter\n");
    if let Ok(answers) = m.answers.lock() {
        for (status, count) in answers.iter() {
            text.push_str(&format!(
                "adstream_ingest_requests_total{{status=\"{status}\"}} {count}\n"
            ));
        }
    }
    text.push_str(
        "# HELP adstream_ingest_ack_seconds Time from a request's events being checked to the broker's \
         acknowledgement of all of them (accepted requests).\n",
    );
    text.push_str("# TYPE adstream_ingest_ack_seconds summary\n");
    text.push_str(&format!(
        "adstream_ingest_ack_seconds_sum {}\nadstream_ingest_ack_seconds_count {}\n",
        m.ack_micros.load(Ordering::Relaxed) as f64 / 1e6,
        m.acked_requests.load(Ordering::Relaxed)
    ));
    text.push_str(
        "# HELP adstream_ingest_idempotency_evictions_total Ids forgotten before their idempotency window \
         ended because the window was full.\n",
    );
    text.push_str("# TYPE adstream_ingest_idempotency_evictions_total counter\n");
    text.push_str(&format!(
        "adstream_ingest_idempotency_evictions_total {}\n",
        m.evictions.load(Ordering::Relaxed)
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
