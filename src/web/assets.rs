//! Static files, embedded in the binary and served under content-hashed names
//! so browsers may cache them forever.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    url: String,
}

fn asset(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
    let digest = hex::encode(Sha256::digest(bytes));
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    Asset { name, content_type, bytes, url: format!("/static/{stem}.{}.{ext}", &digest[..12]) }
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        asset("app.css", "text/css; charset=utf-8", include_bytes!("../../static/app.css")),
        asset("icon.svg", "image/svg+xml", include_bytes!("../../static/icon.svg")),
        asset("live.js", "text/javascript; charset=utf-8", include_bytes!("../../static/live.js")),
        asset("passkeys.js", "text/javascript; charset=utf-8", include_bytes!("../../static/passkeys.js")),
        asset("staff-orders.js", "text/javascript; charset=utf-8", include_bytes!("../../static/staff-orders.js")),
        asset("upload.js", "text/javascript; charset=utf-8", include_bytes!("../../static/upload.js")),
    ]
});

/// The hashed URL of an embedded asset, e.g. `/static/app.3f2a9c1b0d4e.css`.
pub fn url(name: &str) -> &'static str {
    ASSETS.iter().find(|a| a.name == name).map_or("/static/missing", |a| a.url.as_str())
}

pub async fn serve(path: web::Path<String>) -> HttpResponse {
    let wanted = format!("/static/{}", path.into_inner());
    match ASSETS.iter().find(|a| a.url == wanted) {
        Some(asset) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(asset.bytes),
        None => HttpResponse::NotFound().finish(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_carry_a_content_hash() {
        let css = super::url("app.css");
        assert!(css.starts_with("/static/app.") && css.ends_with(".css") && css.len() == "/static/app..css".len() + 12);
        let js = super::url("live.js");
        assert!(js.starts_with("/static/live.") && js.ends_with(".js") && js.len() == "/static/live..js".len() + 12);
        assert_eq!(super::url("nope.js"), "/static/missing");
    }
}
