//! The web console, embedded: `console/dist/` (see `build.rs`) served at `/`.
//!
//! The index is never cached, so a new release is picked up at the next
//! load; the script and stylesheet are named by the hash of their content
//! and cached for a year, immutable. Each file is sent gzip-compressed when
//! the browser accepts it (compressed once, at build time).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use http::{HeaderValue, StatusCode};

/// One built file of the console.
struct Asset {
    /// Its URL path (`/index.html`, `/assets/app-<hash>.js`).
    path: &'static str,
    /// The file.
    body: &'static [u8],
    /// The file, gzip-compressed.
    gzip: &'static [u8],
}

static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// Where the console's files come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The build embedded in the binary.
    Embedded,
    /// A folder laid out like `console/dist/`, read at each request.
    Folder(PathBuf),
}

/// The console's index page (`GET /`).
pub async fn index(source: Source, request: Request) -> Response {
    serve(&source, "/index.html", accepts_gzip(&request)).await
}

/// A hashed asset (`GET /assets/{name}`), or 404 when there is none by that name.
pub async fn asset(source: Source, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    serve(&source, &path, accepts_gzip(&request)).await
}

async fn serve(source: &Source, path: &str, gzip: bool) -> Response {
    let found = match source {
        Source::Embedded => ASSETS
            .iter()
            .find(|asset| asset.path == path)
            .map(|asset| (Cow::Borrowed(asset.body), Cow::Borrowed(asset.gzip))),
        Source::Folder(folder) => read_from(folder, path).await,
    };
    let Some((body, gzipped)) = found else {
        return (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found\n",
        )
            .into_response();
    };
    let mut response = Response::new(Body::from(if gzip { gzipped } else { body }));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(if path == "/index.html" {
            "no-cache"
        } else {
            "public, max-age=31536000, immutable"
        }),
    );
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// A file of a console folder and its gzip copy; none for a path that leaves
/// the folder or names no file.
async fn read_from(folder: &Path, path: &str) -> Option<(Cow<'static, [u8]>, Cow<'static, [u8]>)> {
    let relative = path.strip_prefix('/')?;
    if relative
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return None;
    }
    let file = folder.join(relative);
    let body = tokio::fs::read(&file).await.ok()?;
    let mut gzip_path = file.into_os_string();
    gzip_path.push(".gz");
    let gzip = tokio::fs::read(gzip_path).await.ok()?;
    Some((Cow::Owned(body), Cow::Owned(gzip)))
}

/// Whether the request's `Accept-Encoding` accepts gzip.
fn accepts_gzip(request: &Request) -> bool {
    request
        .headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(coding_is_gzip)
}

/// Whether one element of `Accept-Encoding` accepts gzip (`gzip`, `gzip;q=0.5`, not `gzip;q=0`).
fn coding_is_gzip(coding: &str) -> bool {
    let mut parts = coding.split(';').map(str::trim);
    if !parts.next().is_some_and(|name| name.eq_ignore_ascii_case("gzip")) {
        return false;
    }
    parts
        .filter_map(|parameter| parameter.strip_prefix("q="))
        .all(|quality| quality.parse::<f32>().map_or(true, |quality| quality > 0.0))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_accepted_unless_its_quality_is_zero() {
        assert!(coding_is_gzip("gzip"));
        assert!(coding_is_gzip(" GZIP ;q=0.5"));
        assert!(!coding_is_gzip("gzip;q=0"));
        assert!(!coding_is_gzip("br"));
        assert!(!coding_is_gzip("x-gzip2"));
    }

    #[test]
    fn the_index_names_assets_that_are_embedded() {
        let index = ASSETS
            .iter()
            .find(|asset| asset.path == "/index.html")
            .expect("an index");
        let text = std::str::from_utf8(index.body).expect("UTF-8");
        let named: Vec<&str> = text.split('"').filter(|part| part.starts_with("/assets/")).collect();
        assert_eq!(named.len(), 3, "an icon, a script and a stylesheet: {text}");
        for path in named {
            assert!(ASSETS.iter().any(|asset| asset.path == path), "{path} is not embedded");
        }
    }
}
