//! The live dashboard: three static files compiled into the binary (no CDN, no network: it works offline).
//!
//! The page asks for the bearer token (or takes it from the URL fragment, `/#token=...`, kept in the tab's
//! session storage), loads the current state with one GraphQL query, and follows
//! `campaignMetricsUpdated`, `alertChanged` and `creativeFatigueChanged` over `graphql-transport-ws`, updating
//! in place: the campaign KPI table, the alert feed, budget pacing bars, a CTR/decay chart per fatigued creative
//! (plain SVG) and an attribution comparison across models. Campaign settings and attribution credits, which
//! have no subscription, are re-read every few seconds.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const STYLE_CSS: &str = include_str!("../dashboard/style.css");

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The dashboard's routes: `/`, `/app.js`, `/style.css`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE_CSS) }),
        )
}
