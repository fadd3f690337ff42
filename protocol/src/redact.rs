//! What logs may show of a secret. A session's WHIP and WHEP URLs carry
//! their bearer token in the path (`/media/whip/{token}`): whoever reads a
//! log line holding one can publish into the session or watch it. Every log
//! line and request span that names such a URL goes through [`media_url`].

use std::borrow::Cow;

const MEDIA_PREFIXES: [&str; 2] = ["/media/whip/", "/media/whep/"];

/// `url` (a whole URL or a path) with the token of a WHIP or WHEP URL
/// replaced by `[token]`; anything else unchanged.
pub fn media_url(url: &str) -> Cow<'_, str> {
    let next = |text: &str| {
        MEDIA_PREFIXES
            .iter()
            .filter_map(|p| text.find(p).map(|at| at + p.len()))
            .min()
    };
    if next(url).is_none() {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(start) = next(rest) {
        // The token runs to the end of its path segment.
        let end = rest[start..]
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"') || c.is_whitespace())
            .map_or(rest.len(), |n| start + n);
        out.push_str(&rest[..start]);
        if end > start {
            out.push_str("[token]");
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_of_a_media_url_never_survives() {
        let token = "ad7a1ba87fc0463f9ba6171d9862359d7aa76eef909ac1147913174e9d80c619";
        assert_eq!(
            media_url(&format!("http://127.0.0.1:8080/media/whip/{token}")),
            "http://127.0.0.1:8080/media/whip/[token]"
        );
        assert_eq!(
            media_url(&format!("/media/whep/{token}/resource/7?x=1")),
            "/media/whep/[token]/resource/7?x=1"
        );
        assert_eq!(
            media_url(&format!(
                "POST /media/whip/{token} then /media/whep/{token}"
            )),
            "POST /media/whip/[token] then /media/whep/[token]"
        );
        assert_eq!(media_url("/api/v1/sessions/x"), "/api/v1/sessions/x");
        assert_eq!(media_url("/media/whip/"), "/media/whip/");
    }
}
