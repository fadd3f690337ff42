//! Hostile traffic (issue 15), each test written as the attack: it passes
//! because the attack fails.

use crate::common::{Auth, TestApp, cookie_from, test_config};
use k256::ecdsa::SigningKey;
use serde_json::json;

#[tokio::test]
async fn a_logged_out_cookie_is_refused_even_when_a_copy_was_kept() {
    let t = TestApp::spawn().await;
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let cookie = t.login(&key).await;
    t.get("/me", Auth::Cookie(cookie.clone())).await.ok();
    let out = t
        .post("/auth/logout", Auth::Cookie(cookie.clone()), json!({}))
        .await
        .ok();
    assert_eq!(
        cookie_from(&out).as_deref(),
        Some(""),
        "the browser's copy is cleared"
    );
    // The attacker's copy of the same cookie, still inside its lifetime.
    let refused = t
        .get("/me", Auth::Cookie(cookie))
        .await
        .expect(401, "NOT_AUTHENTICATED");
    assert!(
        refused.message().contains("logout"),
        "{}",
        refused.message()
    );
    // A fresh sign-in works again.
    let again = t.login(&key).await;
    t.get("/me", Auth::Cookie(again)).await.ok();
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_server_is_reached_over_https() {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let set_cookie = |resp: &crate::common::Resp| {
        resp.headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let plain = TestApp::spawn().await;
    let cookie = plain.login(&key).await;
    let out = plain
        .post("/auth/logout", Auth::Cookie(cookie), json!({}))
        .await
        .ok();
    assert!(!set_cookie(&out).contains("Secure"), "{}", set_cookie(&out));

    let https = TestApp::spawn_with(|c| c.http.public_url = "https://lx.example.org".into()).await;
    let cookie = https.login(&key).await;
    let out = https
        .post("/auth/logout", Auth::Cookie(cookie), json!({}))
        .await
        .ok();
    let header = set_cookie(&out);
    assert!(
        header.contains("; Secure") && header.contains("HttpOnly"),
        "{header}"
    );
}

#[test]
fn short_secrets_are_refused_at_start_and_the_media_key_is_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.cookie_secret = "hunter2".into();
    let err = lx_server::serve::cookie_key(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("auth.cookie_secret") && err.contains("32"),
        "{err}"
    );
    config.auth.cookie_secret = String::new();
    config.media.token_secret = "x".repeat(31);
    let err = lx_server::serve::media_token_key(&config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("media.token_secret"), "{err}");

    // Generated: two different keys, each in its own owner-only file.
    config.media.token_secret = String::new();
    let cookie = lx_server::serve::cookie_key(&config).unwrap();
    let media = lx_server::serve::media_token_key(&config).unwrap();
    assert_ne!(cookie, media);
    use std::os::unix::fs::PermissionsExt;
    for file in ["cookie.key", "media.key"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    assert_eq!(
        lx_server::serve::media_token_key(&config).unwrap(),
        media,
        "kept across restarts"
    );
    config.auth.cookie_secret = "a".repeat(32);
    assert!(lx_server::serve::cookie_key(&config).is_ok());
}

/// Every span and event at INFO and above, as text: what a log would show.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CapturedLog {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *attrs.metadata().level() <= tracing::Level::INFO {
            let mut line = format!("\nspan {}", attrs.metadata().name());
            attrs.record(&mut Fields(&mut line));
            self.0.lock().unwrap().push_str(&line);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::INFO {
            let mut line = format!("\nevent {}", event.metadata().target());
            event.record(&mut Fields(&mut line));
            self.0.lock().unwrap().push_str(&line);
        }
    }
}

#[tokio::test]
async fn no_whip_or_whep_token_reaches_a_log_line_at_info() {
    use tracing_subscriber::layer::SubscriberExt;
    let log = CapturedLog::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(log.clone()))
        .expect("this test process's only subscriber");
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("log-consumer").await;
    let supplier = t
        .supplier("log-supplier", crate::common::BOGOTA, true)
        .await;
    let id = t.request(&consumer, crate::common::BOGOTA, 60).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let started = t
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    let mut tokens = Vec::new();
    for field in ["whipUrl", "whepUrl"] {
        let url = started.data()[field].as_str().unwrap().to_owned();
        let token = url.rsplit('/').next().unwrap().to_owned();
        assert!(token.len() >= 32, "{url}");
        // Hit the media URL itself: the request span names its path.
        let client = reqwest::Client::new();
        let _ = client
            .post(&url)
            .header("content-type", "application/sdp")
            .body("v=0\r\n")
            .send()
            .await
            .unwrap();
        let _ = client.delete(format!("{url}/resource/x")).send().await;
        tokens.push(token);
    }
    let text = log.0.lock().unwrap().clone();
    assert!(
        text.contains("/media/whip/[token]"),
        "the span is there: {text}"
    );
    assert!(text.contains("/media/whep/[token]"), "{text}");
    for token in tokens {
        assert!(!text.contains(&token), "token {token} in the log:{text}");
    }
}
