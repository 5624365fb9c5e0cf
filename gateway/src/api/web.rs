//! The web client (`/`, `/app.js`, `/app.css`): one page of plain
//! JavaScript compiled into the binary, so the gateway serves it offline,
//! with no build step and no files to deploy beside it.
//!
//! Every response carries a strict Content-Security-Policy: the page runs
//! only its own script and style, talks only to its own origin, and shows
//! images only from itself or from `blob:` URLs it made from downloads.
//! Even if a message slipped past the client's text-only rendering, the
//! browser would refuse to run any script in it.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' blob: data:; \
     style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// A strong validator from the content, so a browser revalidates
    /// cheaply and never keeps a page of an older build.
    etag: LazyLock<HeaderValue>,
}

macro_rules! asset {
    ($path:literal, $content_type:literal) => {
        Asset {
            body: include_str!($path),
            content_type: $content_type,
            etag: LazyLock::new(|| etag_of(include_str!($path))),
        }
    };
}

static INDEX: Asset = asset!("../../web/index.html", "text/html; charset=utf-8");
static SCRIPT: Asset = asset!("../../web/app.js", "text/javascript; charset=utf-8");
static STYLE: Asset = asset!("../../web/app.css", "text/css; charset=utf-8");

/// The client's routes; they need no state.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| serve(&INDEX, headers)))
        .route("/app.js", get(|headers: HeaderMap| serve(&SCRIPT, headers)))
        .route("/app.css", get(|headers: HeaderMap| serve(&STYLE, headers)))
}

/// FNV-1a of the content: stable across builds and Rust versions, unlike
/// `DefaultHasher`, so replicas of one build agree on every ETag.
fn etag_of(body: &str) -> HeaderValue {
    let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // Hex digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{hash:016x}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

async fn serve(asset: &'static Asset, request: HeaderMap) -> Response {
    let etag = asset.etag.clone();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate every time: a 304 costs one round trip, and a deploy is
    // picked up at the next load instead of after some max-age.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, etag);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    #[tokio::test]
    async fn files_are_served_with_their_types_and_a_strict_policy() {
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/app.css", "text/css; charset=utf-8"),
        ] {
            let response = get(path, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(
                header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            let csp = header_of(&response, header::CONTENT_SECURITY_POLICY);
            assert!(csp.contains("script-src 'self'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
        }
    }

    #[tokio::test]
    async fn a_current_etag_gets_not_modified() {
        let first = get("/app.js", None).await;
        let tag = header_of(&first, header::ETAG).to_owned();
        let again = get("/app.js", Some(&tag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let stale = get("/app.js", Some("\"0000\"")).await;
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = INDEX.body;
        assert!(page.contains(r#"<script src="/app.js" defer></script>"#));
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains("style="), "inline style attribute");
        assert!(
            !page
                .split_whitespace()
                .filter_map(|word| word.split_once('=').map(|(name, _)| name))
                .any(|name| name.starts_with("on") && name.chars().all(|c| c.is_ascii_alphabetic())),
            "inline event handler"
        );
        for file in [INDEX.body, SCRIPT.body] {
            assert!(
                !file.contains("http://") && !file.contains("https://"),
                "no CDN"
            );
        }
        assert!(
            !SCRIPT.body.contains("innerHTML"),
            "text is never parsed as HTML"
        );
    }
}
