//! What a request to a stats listener gets, pure: HAProxy's order, where the
//! `use-service prometheus-exporter` rule (an `http-request` rule) comes before the stats
//! page and its `stats auth`, and anything else finds no server.
use base64::Engine as _;

use crate::config::StatsHttp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Page,
    Csv,
    /// The page asks for credentials it did not get (or not good ones).
    Unauthorized,
    /// Neither the metrics nor the page: HAProxy's 503, the section having no server.
    NoServer,
}

/// HAProxy's 401 page.
pub const UNAUTHORIZED_BODY: &str = "<html><body><h1>401 Unauthorized</h1>\nYou need a valid user and password to access this content.\n</body></html>\n";
/// HAProxy's 503 page.
pub const NO_SERVER_BODY: &str = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n";

/// The route of a request for `path` (`target`: path and query, which `stats uri` is a
/// prefix of, as in HAProxy), with its `Authorization` header.
pub fn route(page: &StatsHttp, path: &str, target: &str, authorization: Option<&str>) -> Route {
    if page.metrics.as_ref().is_some_and(|m| m.matches(path)) {
        return Route::Metrics;
    }
    let Some(rest) = page.uri.as_deref().and_then(|u| target.strip_prefix(u)) else {
        return Route::NoServer;
    };
    if !page.auth.is_empty() && !authorization.is_some_and(|a| allowed(page, a)) {
        return Route::Unauthorized;
    }
    // HAProxy reads `;csv` (and other options) after the URI.
    if rest.split(';').any(|o| o == "csv") {
        Route::Csv
    } else {
        Route::Page
    }
}

/// `Basic base64(user:password)` of one of the `stats auth` pairs.
fn allowed(page: &StatsHttp, authorization: &str) -> bool {
    let Some(encoded) = authorization
        .strip_prefix("Basic ")
        .or_else(|| authorization.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some((user, pass)) = std::str::from_utf8(&decoded)
        .ok()
        .and_then(|s| s.split_once(':'))
    else {
        return false;
    };
    page.auth.iter().any(|(u, p)| u == user && p == pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Origin, PathMatch};

    fn page() -> StatsHttp {
        StatsHttp {
            name: "stats".into(),
            binds: Vec::new(),
            uri: Some("/haproxy?stats".into()),
            auth: vec![("admin".into(), "s3cr:et".into())],
            realm: StatsHttp::DEFAULT_REALM.into(),
            refresh: None,
            metrics: Some(PathMatch::Exact("/metrics".into())),
            origin: Origin::default(),
        }
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn metrics_first_then_the_page_behind_its_auth() {
        let p = page();
        let good = basic("admin:s3cr:et");
        // The exporter is an http-request rule: stats auth does not cover it.
        assert_eq!(route(&p, "/metrics", "/metrics", None), Route::Metrics);
        assert_eq!(
            route(&p, "/haproxy", "/haproxy?stats", None),
            Route::Unauthorized
        );
        assert_eq!(
            route(&p, "/haproxy", "/haproxy?stats", Some(&basic("admin:nope"))),
            Route::Unauthorized
        );
        assert_eq!(
            route(&p, "/haproxy", "/haproxy?stats", Some("Bearer x")),
            Route::Unauthorized
        );
        assert_eq!(
            route(&p, "/haproxy", "/haproxy?stats", Some(&good)),
            Route::Page
        );
        assert_eq!(
            route(&p, "/haproxy", "/haproxy?stats;up;csv", Some(&good)),
            Route::Csv
        );
        assert_eq!(route(&p, "/", "/", Some(&good)), Route::NoServer);
        assert_eq!(route(&p, "/metrics/x", "/metrics/x", None), Route::NoServer);
        // The native `stats_http`: everything under `/`, no credentials asked.
        let simple = StatsHttp::simple("127.0.0.1:8404".parse().expect("addr"), Origin::default());
        assert_eq!(route(&simple, "/stats", "/stats", None), Route::Page);
        assert_eq!(route(&simple, "/stats;csv", "/stats;csv", None), Route::Csv);
        assert_eq!(route(&simple, "/metrics", "/metrics", None), Route::Metrics);
        let prefix = StatsHttp {
            metrics: Some(PathMatch::Prefix("/metrics".into())),
            ..page()
        };
        assert_eq!(
            route(&prefix, "/metrics/x", "/metrics/x", None),
            Route::Metrics
        );
    }
}
