//! The web console: a page and its script and style sheet, built into the
//! binary, served without a token. They hold no data: the page asks for a
//! token at sign-in, keeps it for the browser session (`sessionStorage`)
//! and reads everything from the API with it.

use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// What the assets may do: only talk to this server, run only its own
/// script, and not be framed.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the console's page.
pub(super) async fn index() -> Response {
    let mut r = Html(INDEX).into_response();
    for (k, v) in [
        (header::CONTENT_SECURITY_POLICY, POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        r.headers_mut()
            .insert(k, header::HeaderValue::from_static(v));
    }
    r
}

/// `GET /ui/{file}`: the script and the style sheet.
pub(super) async fn file(Path(file): Path<String>) -> Result<Response, ApiError> {
    match file.as_str() {
        "console.js" => Ok(asset("text/javascript; charset=utf-8", SCRIPT)),
        "console.css" => Ok(asset("text/css; charset=utf-8", STYLE)),
        _ => Err(ApiError::not_found(format!("no console file {file:?}"))),
    }
}
