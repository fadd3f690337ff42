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

/// A session dispatched and started: its media URLs in `data`.
async fn started_session(t: &TestApp, name: &str) -> crate::common::Resp {
    let consumer = t.consumer(&format!("{name}-consumer")).await;
    let supplier = t
        .supplier(&format!("{name}-supplier"), crate::common::BOGOTA, true)
        .await;
    let id = t.request(&consumer, crate::common::BOGOTA, 60).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    t.post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok()
}

#[tokio::test]
async fn no_whip_or_whep_token_reaches_a_log_line_at_info() {
    use tracing_subscriber::layer::SubscriberExt;
    let log = CapturedLog::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(log.clone()))
        .expect("this test process's only subscriber");
    let t = TestApp::spawn_with_media(|_| {}).await;
    let started = started_session(&t, "log").await;
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

/// Whether the server closed the connection within `limit` (EOF or reset).
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (408 or 400) before the close is fine; keep reading.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn host_of(t: &TestApp) -> String {
    t.app
        .config
        .http
        .public_url
        .trim_start_matches("http://")
        .to_owned()
}

#[tokio::test]
async fn a_slow_loris_connection_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let t = TestApp::spawn_with(|c| c.http.header_read_timeout_ms = 500).await;
    let mut loris = tokio::net::TcpStream::connect(host_of(&t)).await.unwrap();
    let started = std::time::Instant::now();
    // Headers that never end, a byte at a time.
    loris
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut dripping = true;
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if loris.write_all(b"X").await.is_err() {
            dripping = false;
            break;
        }
    }
    assert!(
        !dripping || closed_within(&mut loris, std::time::Duration::from_secs(3)).await,
        "the connection is still open"
    );
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "closed after {took:?}"
    );
    // An honest request on a new connection is served.
    t.get("/health", Auth::None).await.ok();
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_the_server_serves_again_once_they_go() {
    let t = TestApp::spawn_with(|c| {
        c.http.max_connections = 2;
        c.http.header_read_timeout_ms = 60_000;
    })
    .await;
    let host = host_of(&t);
    let first = tokio::net::TcpStream::connect(&host).await.unwrap();
    let second = tokio::net::TcpStream::connect(&host).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(&host).await.unwrap();
    assert!(
        closed_within(&mut third, std::time::Duration::from_secs(2)).await,
        "a third connection is refused"
    );
    drop((first, second));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    t.get("/health", Auth::None).await.ok();
}

#[tokio::test]
async fn an_sdp_offer_too_large_or_with_too_many_sections_is_refused_by_name() {
    let t = TestApp::spawn_with_media(|_| {}).await;
    let started = started_session(&t, "sdp").await;
    let whip = started.data()["whipUrl"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let send = |body: String| {
        client
            .post(&whip)
            .header("content-type", "application/sdp")
            .body(body)
            .send()
    };
    let huge = send(format!("v=0\r\n{}", "a=x\r\n".repeat(20_000)))
        .await
        .unwrap();
    assert_eq!(huge.status(), 413, "over 64 KiB");
    let many = format!(
        "v=0\r\n{}",
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n".repeat(1_000)
    );
    let resp = send(many).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("1000 m-sections"),
        "{body}"
    );
}

/// A supplier workspace that also consumes, with two located drones.
async fn fleet_of_two(
    t: &TestApp,
) -> (
    crate::common::Actor,
    crate::common::Device,
    crate::common::Device,
) {
    let both = t
        .actor(
            "both-sides",
            &["CONSUMER", "SUPPLIER"],
            &[
                "sessions:read",
                "sessions:create",
                "sessions:operate",
                "operators:write",
                "pricing:read",
            ],
        )
        .await;
    t.call(
        reqwest::Method::PATCH,
        format!("/workspaces/{}", both.workspace_id),
        both.auth(),
        Some(
            json!({"availabilityState": "ONLINE", "coverageLat": crate::common::BOGOTA.0,
            "coverageLng": crate::common::BOGOTA.1, "coverageRadiusMeters": 2000,
            "deviceKind": "DRONE", "autoAccept": true}),
        ),
    )
    .await
    .ok();
    let a = t.enroll(&both, "drone-a").await;
    let b = t.enroll(&both, "drone-b").await;
    (both, a, b)
}

/// `device` heard from over BOGOTA now (the clock's): the one located
/// device of its fleet, so dispatch picks it. Returns that instant.
async fn locate(t: &TestApp, device: &crate::common::Device) -> i64 {
    let now = t.clock_now();
    let fix = device.sample(None, now, crate::common::BOGOTA, 3.0);
    t.post(
        "/operators/heartbeat",
        device.auth(),
        json!({"sample": fix}),
    )
    .await
    .ok();
    now
}

/// A new consumer's session of at most `max_duration` seconds, dispatched
/// to `device`; the consumer and the session's id.
async fn session_for(
    t: &TestApp,
    device: &crate::common::Device,
    slug: &str,
    max_duration: u32,
) -> (crate::common::Actor, String) {
    let consumer = t.consumer(slug).await;
    let id = t
        .request(&consumer, crate::common::BOGOTA, max_duration)
        .await;
    let dispatched = t
        .post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(
        dispatched.data()["operatorId"],
        device.operator_id.to_string()
    );
    (consumer, id)
}

#[tokio::test]
async fn a_pricing_key_and_a_sibling_device_cannot_lock_and_a_revoked_key_lets_go() {
    let t = TestApp::spawn().await;
    let (owner, a, b) = fleet_of_two(&t).await;
    let lock = |who: Auth, device: &crate::common::Device| {
        t.post(
            format!("/operators/{}/lock", device.operator_id),
            who,
            json!({"subsystem": "camera"}),
        )
    };
    let pricing = t
        .mint_key(&owner.cookie, owner.workspace_id, &["pricing:read"])
        .await;
    lock(Auth::Key(pricing), &a)
        .await
        .expect(403, "NOT_AUTHORIZED");
    let sibling = lock(b.auth(), &a).await.expect(403, "NOT_AUTHORIZED");
    assert_eq!(sibling.detail(), "lock:notOwnDevice");
    t.post(
        format!("/operators/{}/unlock", a.operator_id),
        b.auth(),
        json!({"subsystem": "camera"}),
    )
    .await
    .expect(403, "NOT_AUTHORIZED");
    // The device itself, and a key with operators:write, may.
    lock(a.auth(), &a).await.ok();
    t.post(
        format!("/operators/{}/unlock", a.operator_id),
        a.auth(),
        json!({"subsystem": "camera"}),
    )
    .await
    .ok();
    let writer = t
        .mint_key(&owner.cookie, owner.workspace_id, &["operators:write"])
        .await;
    let held = lock(Auth::Key(writer.clone()), &a).await.ok();
    let holder = held.data()["holder"].as_str().unwrap().to_owned();
    lock(a.auth(), &a).await.expect(409, "LOCKED");
    // The holder's key is revoked: its locks go with it.
    let key_id = holder.trim_start_matches("apiKey:").to_owned();
    t.post(
        format!(
            "/workspaces/{}/api-keys/{key_id}/revoke",
            owner.workspace_id
        ),
        Auth::Cookie(owner.cookie.clone()),
        json!({}),
    )
    .await
    .ok();
    lock(a.auth(), &a).await.ok();
}

#[tokio::test]
async fn a_device_sees_only_the_sessions_it_serves() {
    let t = TestApp::spawn().await;
    let (owner, a, b) = fleet_of_two(&t).await;
    // Only B is located: it serves the session.
    locate(&t, &b).await;
    let (_consumer, served) = session_for(&t, &b, "device-view-consumer", 60).await;
    t.post(format!("/sessions/{served}/start"), b.auth(), json!({}))
        .await
        .ok();
    // The workspace's own consumer session (served elsewhere or not at all).
    let own = t.request(&owner, crate::common::BOGOTA, 60).await;

    let listed_ids = |resp: &crate::common::Resp| -> Vec<String> {
        resp.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_a = t.get("/sessions", a.auth()).await.ok();
    assert!(
        listed_ids(&by_a).is_empty(),
        "device A sees nothing: {:?}",
        listed_ids(&by_a)
    );
    let by_b = t.get("/sessions", b.auth()).await.ok();
    assert_eq!(listed_ids(&by_b), vec![served.clone()]);
    for id in [&served, &own] {
        t.get(format!("/sessions/{id}/viewer-token"), a.auth())
            .await
            .expect(404, "SESSION_NOT_FOUND");
        t.get(format!("/sessions/{id}"), a.auth())
            .await
            .expect(404, "SESSION_NOT_FOUND");
    }
    t.get(format!("/sessions/{own}"), b.auth())
        .await
        .expect(404, "SESSION_NOT_FOUND");
    t.get(format!("/sessions/{served}/viewer-token"), b.auth())
        .await
        .ok();
    // The workspace's owner still sees both sides.
    let by_owner = t.get("/sessions", owner.auth()).await.ok();
    let mut all = listed_ids(&by_owner);
    all.sort();
    let mut expected = vec![served, own];
    expected.sort();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn a_stream_lock_keeps_the_rest_of_the_fleet_off_the_stream_but_not_the_consumer() {
    let t = TestApp::spawn().await;
    let (owner, _a, b) = fleet_of_two(&t).await;
    locate(&t, &b).await;
    let pilot = t
        .mint_key(
            &owner.cookie,
            owner.workspace_id,
            &["operators:write", "sessions:operate"],
        )
        .await;
    let held = t
        .post(
            format!("/operators/{}/lock", b.operator_id),
            Auth::Key(pilot.clone()),
            json!({"subsystem": "stream"}),
        )
        .await
        .ok();
    let holder = held.data()["holder"].as_str().unwrap().to_owned();
    let (consumer, id) = session_for(&t, &b, "locked-stream-consumer", 60).await;
    // The fleet's other controller (the owner's key) is held off the stream.
    let refused = t
        .post(format!("/sessions/{id}/start"), owner.auth(), json!({}))
        .await
        .expect(409, "LOCKED");
    assert_eq!(refused.detail(), format!("lock:heldBy:{holder}"));
    t.get(format!("/sessions/{id}/producer-token"), owner.auth())
        .await
        .expect(409, "LOCKED");
    // The holder and the device itself act.
    t.post(
        format!("/sessions/{id}/start"),
        Auth::Key(pilot.clone()),
        json!({}),
    )
    .await
    .ok();
    t.post(format!("/sessions/{id}/start"), b.auth(), json!({}))
        .await
        .ok();
    t.media
        .first_frame(id.parse().unwrap(), t.clock_now())
        .await;
    t.wait_for_state(&consumer, &id, "LIVE").await;
    t.post(format!("/sessions/{id}/end"), owner.auth(), json!({}))
        .await
        .expect(409, "LOCKED");
    assert_eq!(t.session(&consumer, &id).await["state"], "LIVE");
    // The consumer, who pays, is never locked out of ending it.
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
}

#[tokio::test]
async fn a_flood_of_challenges_from_one_address_gets_429s_and_the_table_stays_small() {
    let t = TestApp::spawn_with(|c| c.rate_limits.challenges_per_minute = 20).await;
    let wallet =
        lx_protocol::wallet::Address::from_signing_key(&SigningKey::random(&mut rand::rngs::OsRng));
    let body = json!({"walletAddress": wallet.to_checksum()});
    let (mut ok, mut limited, mut retry_after) = (0u64, 0u64, 0u64);
    let calls = 100_000u64;
    let started = std::time::Instant::now();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    use futures_util::StreamExt;
    let mut tally = |resp: crate::common::Resp| match resp.status.as_u16() {
        200 | 201 => ok += 1,
        429 => {
            limited += 1;
            if resp.headers.get("retry-after").is_some() && resp.code() == "RATE_LIMITED" {
                retry_after += 1;
            }
        }
        other => panic!("{other}: {}", resp.body),
    };
    for i in 0..calls {
        let path = if i % 2 == 0 {
            "/auth/wallet/challenge"
        } else {
            "/workspaces/challenge"
        };
        pending.push(t.post(path, Auth::None, body.clone()));
        if pending.len() >= 64 {
            tally(pending.next().await.unwrap());
        }
    }
    while let Some(resp) = pending.next().await {
        tally(resp);
    }
    // A burst of 20, then 20 a minute.
    let allowed = 20 + (started.elapsed().as_secs_f64() / 3.0).ceil() as u64;
    assert!(
        ok <= allowed,
        "{ok} challenges got through a limit of 20 a minute"
    );
    assert_eq!(ok + limited, calls);
    assert_eq!(retry_after, limited, "every 429 says when to come back");
    let db = rusqlite::Connection::open(t.dir.path().join("lx.db")).unwrap();
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM challenges", [], |r| r.get(0))
        .unwrap();
    assert!(rows as u64 <= allowed, "{rows} challenges stored");
    // Other routes and other kinds of calls are not held up.
    t.get("/health", Auth::None).await.ok();
}

#[tokio::test]
async fn a_refusal_is_answered_late_so_a_client_that_does_not_wait_is_slowed() {
    let t = TestApp::spawn_with(|c| {
        c.rate_limits.challenges_per_minute = 1;
        c.rate_limits.refusal_delay_ms = 300;
    })
    .await;
    let body = json!({"walletAddress": lx_protocol::wallet::Address::from_signing_key(
        &SigningKey::random(&mut rand::rngs::OsRng)
    )
    .to_checksum()});
    let started = std::time::Instant::now();
    t.post("/auth/wallet/challenge", Auth::None, body.clone())
        .await
        .ok();
    assert!(
        started.elapsed() < std::time::Duration::from_millis(300),
        "an allowed call is not delayed"
    );
    let started = std::time::Instant::now();
    t.post("/auth/wallet/challenge", Auth::None, body)
        .await
        .expect(429, "RATE_LIMITED");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "refused after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_registration_without_a_usable_token_is_refused_before_any_signature_work() {
    let t = TestApp::spawn().await;
    let supplier = t.supplier("cheap-first", crate::common::BOGOTA, true).await;
    let device = SigningKey::random(&mut rand::rngs::OsRng);
    let address = lx_protocol::wallet::Address::from_signing_key(&device).to_checksum();
    // The attacker's registration: a made-up token and a well-formed proof
    // that signs nothing (recovering a key from it is the costly part). The
    // token is judged first, by name.
    let bogus = format!("0x{}1b", "11".repeat(64));
    let refused = t
        .post(
            "/operators/register",
            Auth::None,
            json!({"enrollmentToken": "lxen_madeup", "name": "x", "deviceKind": "DRONE",
                "address": address, "proof": bogus}),
        )
        .await
        .expect(400, "INVALID_INPUT");
    assert!(
        refused.message().starts_with("enrollmentToken"),
        "{}",
        refused.message()
    );
    // A spent token is refused the same way, before its proof.
    let enrolled = t.enroll(&supplier, "first").await;
    assert!(!enrolled.operator_id.is_nil());
    let token = t
        .post(
            format!("/workspaces/{}/enrollment-tokens", supplier.workspace_id),
            supplier.auth(),
            json!({}),
        )
        .await
        .ok();
    let token = token.data()["token"].as_str().unwrap().to_owned();
    let proof = lx_protocol::wallet::sign_personal(&device, token.as_bytes()).to_string();
    t.post(
        "/operators/register",
        Auth::None,
        json!({"enrollmentToken": token, "name": "second", "deviceKind": "DRONE",
            "address": address, "proof": proof}),
    )
    .await
    .ok();
    let again = t
        .post(
            "/operators/register",
            Auth::None,
            json!({"enrollmentToken": token, "name": "third", "deviceKind": "DRONE",
                "address": address, "proof": bogus}),
        )
        .await
        .expect(400, "INVALID_INPUT");
    assert!(
        again.message().contains("already used"),
        "{}",
        again.message()
    );
}

/// A server whose fleet link manages the broker's files under `dir`, with
/// no broker running.
async fn with_broker_files(
    dir: &std::path::Path,
) -> (TestApp, lx_server::mqtt::test_broker::TestBroker) {
    let broker = lx_server::mqtt::test_broker::TestBroker::configure(dir).unwrap();
    let t = TestApp::spawn_realtime_with(|c| broker.apply(c)).await;
    (t, broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_broker_pid_file_does_not_stop_an_enrollment() {
    let dir = tempfile::tempdir().unwrap();
    let (t, broker) = with_broker_files(dir.path()).await;
    // The broker died and left its pid file behind.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(
        broker.files.pid_file.as_ref().unwrap(),
        format!("{dead_pid}\n"),
    )
    .unwrap();
    let supplier = t.supplier("stale-pid", crate::common::BOGOTA, true).await;
    let device = t.enroll(&supplier, "drone").await;
    assert!(device.mqtt.is_some(), "its broker account is issued");
    let passwords = std::fs::read_to_string(&broker.files.password_file).unwrap();
    assert!(
        passwords.contains(&device.operator_id.to_string()),
        "the account is written for the broker's next start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_whose_broker_files_cannot_be_written_keeps_its_token_and_is_synced_later() {
    let dir = tempfile::tempdir().unwrap();
    let accounts_dir = dir.path().join("accounts");
    std::fs::create_dir(&accounts_dir).unwrap();
    let mut broker = lx_server::mqtt::test_broker::TestBroker::configure(dir.path()).unwrap();
    broker.files.password_file = accounts_dir.join("passwords");
    let password_file = broker.files.password_file.clone();
    let t = TestApp::spawn_realtime_with(|c| broker.apply(c)).await;
    // The broker's directory breaks: its password file cannot be written.
    std::fs::remove_dir_all(&accounts_dir).unwrap();
    std::fs::write(&accounts_dir, "in the way").unwrap();
    let supplier = t
        .supplier("broken-broker", crate::common::BOGOTA, true)
        .await;
    let device = t.enroll(&supplier, "drone").await;
    assert!(device.mqtt.is_some(), "its broker account is issued");
    // The device has its token all the same, and it works.
    t.post("/operators/heartbeat", device.auth(), json!({}))
        .await
        .ok();
    // The directory is mended; the background writer catches up.
    std::fs::remove_file(&accounts_dir).unwrap();
    std::fs::create_dir(&accounts_dir).unwrap();
    let operator = device.operator_id.to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let written = std::fs::read_to_string(&password_file).unwrap_or_default();
        if written.contains(&operator) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the password file was never rewritten"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Routes open to anyone by design: what a client needs before it has a
/// key (sign-in, a workspace, a device's enrollment) and what the public
/// map shows.
const PUBLIC_ROUTES: [&str; 9] = [
    "get /api/v1/health",
    "get /api/v1/config",
    "get /api/v1/coverage",
    "get /api/v1/demand",
    "post /api/v1/auth/wallet/challenge",
    "post /api/v1/auth/wallet/login",
    "post /api/v1/workspaces/challenge",
    "post /api/v1/workspaces",
    "post /api/v1/operators/register",
];

/// Routes about the caller itself: any credential, no scope.
const IDENTITY_ROUTES: [&str; 4] = [
    "get /api/v1/me",
    // The device's own token says who it is; no API key reaches it.
    "post /api/v1/operators/reconnect",
    "get /api/v1/workspaces",
    "get /api/v1/workspaces/{id}",
];

const ALL_SCOPES: [&str; 7] = [
    "sessions:read",
    "sessions:create",
    "sessions:operate",
    "pricing:read",
    "wallet:read",
    "operators:write",
    "webhooks:write",
];

#[tokio::test]
async fn every_route_names_its_scopes_and_a_key_without_them_is_refused() {
    let t = TestApp::spawn().await;
    let owner = t
        .actor("scope-owner", &["CONSUMER", "SUPPLIER"], &["sessions:read"])
        .await;
    let doc = t.get("/openapi.json", Auth::None).await.ok();
    let paths = doc.body["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            let name = format!("{method} {path}");
            let Some(requirements) = operation["security"].as_array() else {
                assert!(
                    PUBLIC_ROUTES.contains(&name.as_str()),
                    "{name} names no security and is not a public route"
                );
                continue;
            };
            assert!(!PUBLIC_ROUTES.contains(&name.as_str()), "{name}");
            let scopes: Vec<&str> = requirements
                .iter()
                .filter_map(|r| r.get("apiKey").or_else(|| r.get("deviceToken")))
                .flat_map(|s| s.as_array().unwrap())
                .map(|s| s.as_str().unwrap())
                .collect();
            // `{}` is "no credential needed" (logout without a cookie).
            let cookie_only = requirements
                .iter()
                .filter(|r| r.as_object().is_some_and(|o| !o.is_empty()))
                .all(|r| r.get("walletCookie").is_some());
            if cookie_only || IDENTITY_ROUTES.contains(&name.as_str()) {
                assert!(scopes.is_empty(), "{name}: {scopes:?}");
                continue;
            }
            assert!(!scopes.is_empty(), "{name} names no scope");
            for scope in &scopes {
                assert!(ALL_SCOPES.contains(scope), "{name}: unknown scope {scope}");
            }
            // A key holding every scope but the route's.
            let others: Vec<&str> = ALL_SCOPES
                .iter()
                .copied()
                .filter(|s| !scopes.contains(s))
                .collect();
            let key = t.mint_key(&owner.cookie, owner.workspace_id, &others).await;
            let mut url = path.trim_start_matches("/api/v1").replace(
                "/workspaces/{id}",
                &format!("/workspaces/{}", owner.workspace_id),
            );
            for param in ["{id}", "{sessionId}", "{keyId}"] {
                url = url.replace(param, &uuid::Uuid::new_v4().to_string());
            }
            if url == "/pricing/quote" {
                url.push_str("?lat=4.7&lng=-74.07&durationSeconds=60");
            }
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE)
                .then(|| json!({}));
            let resp = t.call(method, &url, Auth::Key(key), body).await;
            // A route whose body `{}` cannot be read may say so first; none
            // may answer anything else but the refusal.
            let body_refused = resp.status == 400 && operation.get("requestBody").is_some();
            assert!(
                resp.status == 403 || body_refused,
                "{name} without {scopes:?}: {} {}",
                resp.status,
                resp.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 35, "only {checked} routes checked");
}

#[tokio::test]
async fn a_device_cannot_stuff_a_session_past_its_sample_cap() {
    let t = TestApp::spawn().await;
    let (_owner, _a, b) = fleet_of_two(&t).await;
    let located = locate(&t, &b).await;
    // Ten seconds at most: 2 × 10 + 1,200 samples.
    let (consumer, id) = session_for(&t, &b, "stuffed-consumer", 10).await;
    let cap = 2 * 10 + 1200;
    t.clock.advance_ms(1_500);
    let sid: uuid::Uuid = id.parse().unwrap();
    let path = format!("/sessions/{id}/telemetry");
    let batch = |from: i64, n: i64| -> Vec<serde_json::Value> {
        (from..from + n)
            .map(|i| b.sample(Some(sid), located + 1 + i, crate::common::BOGOTA, 3.0))
            .collect()
    };
    t.post(&path, b.auth(), json!(batch(0, 1000))).await.ok();
    t.post(&path, b.auth(), json!(batch(1000, cap - 1000)))
        .await
        .ok();
    let full = t
        .post(&path, b.auth(), json!(batch(cap, 1)))
        .await
        .expect(409, "INVALID_STATE");
    assert_eq!(full.detail(), "telemetry:sessionFull");
    // A replay of what it holds is still a replay, not a full session.
    let again = b.sample_with_sequence(Some(sid), 5, located + 1 + 4, crate::common::BOGOTA, 3.0);
    t.post(&path, b.auth(), again)
        .await
        .expect(409, "REPLAYED_SEQUENCE");
    let track = t
        .get(
            format!("/sessions/{id}/telemetry?limit=10000"),
            consumer.auth(),
        )
        .await
        .ok();
    assert_eq!(track.data().as_array().unwrap().len() as i64, cap);
}

#[tokio::test]
async fn a_device_cannot_take_a_sequence_past_what_the_store_holds() {
    let t = TestApp::spawn().await;
    let (_owner, _a, b) = fleet_of_two(&t).await;
    let located = locate(&t, &b).await;
    let (consumer, id) = session_for(&t, &b, "far-sequence-consumer", 10).await;
    t.clock.advance_ms(1_500);
    let sid: uuid::Uuid = id.parse().unwrap();
    let path = format!("/sessions/{id}/telemetry");
    // Above 2^63 - 1 sequences would store as one number: each such sample
    // would pass as new, again and again.
    for (n, sequence) in [(1, 1u64 << 63), (2, u64::MAX)] {
        let sample =
            b.sample_with_sequence(Some(sid), sequence, located + n, crate::common::BOGOTA, 3.0);
        let refused = t
            .post(&path, b.auth(), sample)
            .await
            .expect(400, "INVALID_INPUT");
        assert_eq!(refused.detail(), "input:sequence");
    }
    let track = t
        .get(format!("/sessions/{id}/telemetry"), consumer.auth())
        .await
        .ok();
    assert_eq!(track.data().as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_address_guessing_credentials_is_shut_out_of_every_route_and_others_are_not() {
    let t = TestApp::spawn_with(|c| c.rate_limits.auth_failures_per_minute = 5).await;
    let honest = t.consumer("guessed-at").await;
    let from = |n: u8| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, n]))
            .build()
            .unwrap()
    };
    let (guesser, other) = (from(2), from(3));
    let get = |client: &reqwest::Client, path: &str, key: Option<String>| {
        let mut request = client.get(format!("{}{path}", t.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    // Asking without any credential is not guessing.
    for _ in 0..10 {
        let resp = get(&guesser, "/me", None).await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    }
    for n in 0..6 {
        let resp = get(&guesser, "/sessions", Some(format!("lxxn_test_guess{n}")))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    }
    // Past the budget: 429 on everything from that address, a good key included.
    let shut = get(&guesser, "/sessions", Some(honest.api_key.clone()))
        .await
        .unwrap();
    assert_eq!(shut.status().as_u16(), 429);
    assert!(shut.headers().get("retry-after").is_some());
    let body: serde_json::Value = shut.json().await.unwrap();
    assert_eq!(body["detail"], "rateLimit:AuthFailures", "{body}");
    let health = get(&guesser, "/health", None).await.unwrap();
    assert_eq!(health.status().as_u16(), 429);
    // Another address is served, and so is this host (127.0.0.1), which
    // the server's own /mcp tools and a reverse proxy share.
    let resp = get(&other, "/sessions", Some(honest.api_key.clone()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    for n in 0..10 {
        t.get("/sessions", Auth::Key(format!("lxxn_test_local{n}")))
            .await
            .expect(401, "NOT_AUTHENTICATED");
    }
    t.get("/sessions", honest.auth()).await.ok();
}

#[tokio::test]
async fn a_fleet_is_listed_a_bounded_page_at_a_time() {
    let t = TestApp::spawn().await;
    let (owner, a, b) = fleet_of_two(&t).await;
    let path = format!("/workspaces/{}/operators", owner.workspace_id);
    let ids = |resp: &crate::common::Resp| -> Vec<String> {
        resp.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Enrolled in the same millisecond: the order is the id's after that.
    let all = ids(&t.get(path.clone(), owner.auth()).await.ok());
    let mut both = vec![a.operator_id.to_string(), b.operator_id.to_string()];
    both.sort();
    let mut listed = all.clone();
    listed.sort();
    assert_eq!(listed, both);
    let first = t.get(format!("{path}?limit=1"), owner.auth()).await.ok();
    assert_eq!(ids(&first), vec![all[0].clone()]);
    let next = t
        .get(format!("{path}?limit=1&after={}", all[0]), owner.auth())
        .await
        .ok();
    assert_eq!(ids(&next), vec![all[1].clone()]);
    let last = t
        .get(format!("{path}?after={}", all[1]), owner.auth())
        .await
        .ok();
    assert!(ids(&last).is_empty());
    for bad in ["limit=0", "limit=1001", "after=not-an-id"] {
        t.get(format!("{path}?{bad}"), owner.auth())
            .await
            .expect(400, "INVALID_INPUT");
    }
    t.get(
        format!("{path}?after={}", uuid::Uuid::new_v4()),
        owner.auth(),
    )
    .await
    .expect(400, "INVALID_INPUT");
    // A device pages through itself only.
    let own = t.get(path.clone(), b.auth()).await.ok();
    assert_eq!(ids(&own), vec![b.operator_id.to_string()]);
    // And cannot tell a sibling's id from a made-up one.
    t.get(format!("{path}?after={}", a.operator_id), b.auth())
        .await
        .expect(400, "INVALID_INPUT");
}

#[tokio::test]
async fn a_device_hands_in_only_its_own_logs_within_the_caps_and_only_its_admin_reads_them() {
    let t = TestApp::spawn().await;
    let (supplier, drone) = t.fleet("logs-co", crate::common::BOGOTA).await;
    let other = t.enroll(&supplier, "drone-2").await;
    let mine = format!("/operators/{}/logs", drone.operator_id);
    // Another device's: refused by name.
    let r = t
        .post(&mine, other.auth(), json!({"lines": ["x"]}))
        .await
        .expect(403, "WRONG_DEVICE");
    assert_eq!(r.detail(), "logs:otherDevice");
    // Over the line cap: refused, nothing stored.
    let many: Vec<String> = (0..5001).map(|i| format!("line {i}")).collect();
    t.post(&mine, drone.auth(), json!({"lines": many}))
        .await
        .expect(400, "INVALID_INPUT");
    t.get(&mine, supplier.auth()).await.expect(404, "NOT_FOUND");
    // A long line is cut, and the upload is the admin's to read.
    let long = "é".repeat(5000);
    t.post(
        &mine,
        drone.auth(),
        json!({"lines": ["ok", long], "truncated": true}),
    )
    .await
    .ok();
    let read = t.get(&mine, supplier.auth()).await.ok();
    let lines = read.data()["lines"].as_array().unwrap();
    assert_eq!(lines[0], "ok");
    assert_eq!(
        lines[1].as_str().unwrap().chars().count(),
        4097,
        "cut at 4096 and marked"
    );
    assert_eq!(read.data()["truncated"], true);
    // Not the device itself, nor a key without operators:write.
    t.get(&mine, drone.auth())
        .await
        .expect(403, "NOT_AUTHORIZED");
    let reader = t
        .mint_key(&supplier.cookie, supplier.workspace_id, &["sessions:read"])
        .await;
    t.get(&mine, Auth::Key(reader))
        .await
        .expect(403, "NOT_AUTHORIZED");
    // A removed device's logs go with it.
    t.call(
        reqwest::Method::DELETE,
        format!("/operators/{}", drone.operator_id),
        supplier.auth(),
        None,
    )
    .await
    .ok();
    assert_eq!(
        t.app.store.device_logs(drone.operator_id).await.unwrap(),
        None
    );
}
