//! What logs may show of a secret. A session's WHIP and WHEP URLs carry
//! their bearer token in the path (`/media/whip/{token}`): whoever reads a
//! log line holding one can publish into the session or watch it. Every log
//! line and request span that names such a URL goes through [`media_url`].
//! A camera's RTSP URL carries its password (`rtsp://user:password@…`):
//! every error and log line that may quote it goes through
//! [`url_credentials`].

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

/// `text` with the password of every `scheme://user:password@` in it
/// replaced by `[password]`; anything else unchanged.
pub fn url_credentials(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        let tail = &rest[authority_start..];
        // The authority ends at the first '/', '?', '#', quote or space.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@').and_then(|userinfo_end| {
            authority[..userinfo_end]
                .find(':')
                .map(|colon| (colon, userinfo_end))
        }) {
            Some((colon, userinfo_end)) => {
                out.push_str(&rest[..authority_start + colon + 1]);
                out.push_str("[password]");
                out.push_str(&tail[userinfo_end..end]);
                rest = &tail[end..];
                changed = true;
            }
            None => {
                out.push_str(&rest[..authority_start + end]);
                rest = &tail[end..];
            }
        }
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_rtsp_password_never_survives() {
        use super::url_credentials;
        assert_eq!(
            url_credentials(
                "rtspsrc location=\"rtsp://cam:s3cr@t:x@10.0.0.9:554/bars\" latency=200"
            ),
            "rtspsrc location=\"rtsp://cam:[password]@10.0.0.9:554/bars\" latency=200"
        );
        assert_eq!(
            url_credentials("a rtsp://u:p@h/x and http://v:q@i:8/y"),
            "a rtsp://u:[password]@h/x and http://v:[password]@i:8/y"
        );
        assert_eq!(
            url_credentials("rtsp://cam@h/x"),
            "rtsp://cam@h/x",
            "no password"
        );
        assert_eq!(url_credentials("no url here"), "no url here");
        assert_eq!(url_credentials("rtsp://h:554/x"), "rtsp://h:554/x");
    }

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
