//! Report pages over HTTP for commissioners: the same reports, tokens, roles, budgets and
//! audit records as `fivesafes.v1.Reports`, for a browser or `curl`.
//!
//! - `GET /` — the reports the caller may run, with links.
//! - `GET /reports/{name}?by=…&period=…&from=…&to=…&format=html|csv|svg|png|table` — one
//!   report (default `html`: a self-contained page with table, definition, suppression
//!   legend and chart).
//!
//! Credentials: `Authorization: Bearer <token>`, or HTTP Basic with the principal as user
//! and the token as password (a browser asks for them after the `401`). The project header
//! `x-fivesafes-project` works as over gRPC. Tokens are never accepted in URLs (they would
//! end up in logs and browser history).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fivesafes_policies::reports::ReportRegistry;
use tonic::Code;
use tonic::metadata::MetadataMap;

use crate::services::reports::{render, run};
use crate::state::{Need, State};

#[derive(Clone)]
struct App {
    state: Arc<State>,
    registry: Arc<ReportRegistry>,
}

/// The router of the report pages.
pub fn router(state: Arc<State>, registry: Arc<ReportRegistry>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/reports/{name}", get(report))
        .with_state(App { state, registry })
}

fn error(status: &tonic::Status) -> Response {
    let code = match status.code() {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut r = (code, format!("{}\n", status.message())).into_response();
    if code == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"fivesafes reports\", charset=\"UTF-8\""),
        );
    }
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn index(AxumState(app): AxumState<App>, headers: HeaderMap) -> Response {
    let md = MetadataMap::from_headers(headers);
    if let Err(s) = app.state.caller(&md, Need::Reports).await {
        return error(&s);
    }
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fivesafes \
         reports</title></head><body><h1>Reports</h1><ul>",
    );
    for d in app.registry.list() {
        html.push_str(&format!(
            "<li><a href=\"/reports/{0}\">{1}</a> — {2}</li>",
            escape(&d.name),
            escape(&d.title),
            escape(&d.description)
        ));
    }
    html.push_str("</ul></body></html>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn report(
    AxumState(app): AxumState<App>,
    Path(name): Path<String>,
    Query(mut params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let md = MetadataMap::from_headers(headers);
    let caller = match app.state.caller(&md, Need::Reports).await {
        Ok(c) => c,
        Err(s) => return error(&s),
    };
    let format = params.remove("format").unwrap_or_else(|| "html".into());
    if format.is_empty() {
        return error(&tonic::Status::invalid_argument(
            "format must be one of html, csv, table, svg, png",
        ));
    }
    let ran = match run(&app.state, &app.registry, &caller, &name, &params).await {
        Ok(r) => r,
        Err(s) => return error(&s),
    };
    match render(&ran.result, &app.registry, &format) {
        Ok((bytes, media)) => ([(header::CONTENT_TYPE, media)], bytes).into_response(),
        Err(s) => error(&s),
    }
}
