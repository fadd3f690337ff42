//! The web console: static HTML, ES modules and CSS compiled into the
//! binary and served at `/console/`, with no build step.
//!
//! Contract: every file is answered with its content type, `Cache-Control:
//! no-cache` (the browser revalidates, so a new binary's console is picked
//! up at once) and a `Content-Security-Policy` that lets the page load only
//! its own files and talk only to this server and the media origins
//! (`http.public_url`, plus `http.console_connect_origins` for an external
//! media edge). Any other path under `/console/` is a 404. `/` and
//! `/console` redirect to `/console/`, so the modules' relative imports
//! resolve.
//!
//! The console acts with the wallet's `lx_session` cookie, and `SameSite=Lax`
//! only keeps it from other *sites*: a page on another port of the same host
//! is same-site, and the API reads a JSON body whatever its content type, so
//! a plain HTML form there could act for the signed-in wallet.
//! [`same_origin_cookie_writes`] refuses such writes by their `Origin`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use lx_protocol::ErrorCode;

use crate::config::{Config, origin_of};
use crate::error::ApiError;
use crate::http::AppState;

/// One embedded file: its name under `/console/`, its content type, its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../console/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("../console/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_bytes!("../console/api.js"),
    },
    Asset {
        name: "wallet.js",
        content_type: JS,
        body: include_bytes!("../console/wallet.js"),
    },
    Asset {
        name: "media.js",
        content_type: JS,
        body: include_bytes!("../console/media.js"),
    },
    Asset {
        name: "plot.js",
        content_type: JS,
        body: include_bytes!("../console/plot.js"),
    },
    Asset {
        name: "pages.js",
        content_type: JS,
        body: include_bytes!("../console/pages.js"),
    },
];

/// The policy of every console response.
///
/// - `connect-src`: the API and the built-in media plane are this server
///   (`'self'`, and `public_url` for when the browser reached it by another
///   name); an external edge's WHIP/WHEP origins come from the config.
/// - `img-src blob:`: the latest frame is fetched with the cookie and shown
///   from a blob URL, so an API error can be shown instead of a broken image.
/// - No inline script or style anywhere, and no framing.
pub fn content_security_policy(config: &Config) -> String {
    let mut connect = vec!["'self'".to_owned()];
    let extra = config.http.console_connect_origins.iter();
    for origin in std::iter::once(&config.http.public_url)
        .chain(extra)
        .filter_map(|url| origin_of(url))
    {
        if !connect.contains(&origin) {
            connect.push(origin);
        }
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
         media-src 'self' blob:; connect-src {}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
        connect.join(" ")
    )
}

/// The console's routes, to be merged into the application's router.
pub fn router(config: &Config) -> Router<AppState> {
    // Built once: a policy that cannot be a header value is a bug in
    // `origin_of`, and then the console is served without one rather than
    // not at all.
    let csp: Arc<Option<HeaderValue>> =
        Arc::new(HeaderValue::from_str(&content_security_policy(config)).ok());
    let index_csp = Arc::clone(&csp);
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .route(
            "/console",
            get(|| async { Redirect::temporary("/console/") }),
        )
        .route(
            "/console/",
            get(move || {
                let csp = Arc::clone(&index_csp);
                async move { serve("index.html", csp.as_ref().as_ref()) }
            }),
        )
        .route(
            "/console/{file}",
            get(move |Path(file): Path<String>| {
                let csp = Arc::clone(&csp);
                async move { serve(&file, csp.as_ref().as_ref()) }
            }),
        )
}

/// Refuses a write that a browser sent with the wallet cookie from a page of
/// another origin (the browser names it in `Origin`). Reads, API-key and
/// device callers (a bearer token cannot be attached by another page), and
/// clients that send no `Origin` (curl, SDKs, agents) pass untouched.
pub async fn same_origin_cookie_writes(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let headers = request.headers();
    let by_cookie = !headers.contains_key(header::AUTHORIZATION)
        && headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|pair| {
                pair.trim()
                    .starts_with(&format!("{}=", crate::auth::COOKIE_NAME))
            });
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("null"));
    if let (true, true, Some(origin)) = (write, by_cookie, origin) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !same_origin(origin, host, &app.config.http.public_url) {
            return ApiError::forbidden(
                format!(
                    "a page of {origin} cannot act with this wallet's sign-in; use the console at \
                     {}/console/ or an API key",
                    app.config.http.public_url.trim_end_matches('/')
                ),
                "auth:crossOrigin",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether `origin` is this server: the origin of `public_url`, or the
/// `Host` the request was sent to (a server reached by another name).
fn same_origin(origin: &str, host: Option<&str>, public_url: &str) -> bool {
    if origin_of(public_url).as_deref() == Some(origin) {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    ["http", "https"]
        .iter()
        .any(|scheme| origin == format!("{scheme}://{host}"))
}

fn serve(name: &str, csp: Option<&HeaderValue>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::new(
            ErrorCode::NotFound,
            format!("the console has no file '{name}'"),
        )
        .with_detail("console:notFound")
        .into_response();
    };
    let mut response = (StatusCode::OK, asset.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(csp) = csp {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_scheme_and_authority_only() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080/api/v1").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin_of("https://edge.example.com").as_deref(),
            Some("https://edge.example.com")
        );
        assert_eq!(origin_of("ftp://example.com"), None);
        assert_eq!(origin_of("https://a@example.com"), None);
        assert_eq!(origin_of("example.com; script-src *"), None);
    }

    #[test]
    fn only_this_servers_origins_count_as_same_origin() {
        let public = "http://127.0.0.1:8080";
        assert!(same_origin("http://127.0.0.1:8080", None, public));
        assert!(same_origin(
            "http://lx.local:9000",
            Some("lx.local:9000"),
            public
        ));
        assert!(!same_origin(
            "http://127.0.0.1:8081",
            Some("127.0.0.1:8080"),
            public
        ));
        assert!(!same_origin("null", Some("127.0.0.1:8080"), public));
    }

    #[test]
    fn the_policy_names_self_the_public_url_and_the_configured_edges() {
        let mut config = Config::defaults();
        config.http.public_url = "http://127.0.0.1:9000".into();
        config.http.console_connect_origins = vec![
            "https://customer-x.cloudflarestream.com/whip".into(),
            "not a url; script-src *".into(),
        ];
        let csp = content_security_policy(&config);
        assert!(
            csp.contains(
                "connect-src 'self' http://127.0.0.1:9000 https://customer-x.cloudflarestream.com;"
            ),
            "{csp}"
        );
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("script-src *"), "{csp}");
    }

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap_or_default();
            for from in text.lines().filter_map(|l| l.split(" from './").nth(1)) {
                let target = from.trim_end_matches(';').trim_end_matches('\'');
                assert!(
                    ASSETS.iter().any(|a| a.name == target),
                    "{} imports {target}, which is not embedded",
                    asset.name
                );
            }
        }
    }
}
