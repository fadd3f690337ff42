//! Outbound webhooks over real HTTP: a receiver on loopback that checks
//! every signature with the secret it was given, taken down and brought back
//! on the same port; a receiver that always answers 500; a server killed
//! with deliveries pending.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{Actor, Api, Auth, BOGOTA, TestApp, cookie_from};

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    event_type: String,
    body: Value,
    /// The signature matched HMAC-SHA256(secret, "{timestamp}.{body}"), the
    /// timestamp was within five minutes and the id header matched the body.
    verified: bool,
}

#[derive(Debug, Default)]
struct Inbox {
    secret: Mutex<String>,
    requests: Mutex<Vec<Received>>,
    /// The status every request is answered with.
    answer: AtomicU16,
    /// How long each answer takes, in ms.
    delay_ms: AtomicU16,
}

impl Inbox {
    fn verify(&self, headers: &HeaderMap, body: &[u8], parsed: &Value) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(timestamp), Some(signature), Some(id)) = (
            header("x-lx-webhook-timestamp"),
            header("x-lx-webhook-signature"),
            header("x-lx-webhook-id"),
        ) else {
            return false;
        };
        let Ok(seconds) = timestamp.parse::<i64>() else {
            return false;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let Some(hex_tag) = signature.strip_prefix("v1=") else {
            return false;
        };
        let Ok(tag) = hex::decode(hex_tag) else {
            return false;
        };
        let secret = self.secret.lock().unwrap().clone();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&tag).is_ok() && (now - seconds).abs() <= 300 && parsed["id"] == id
    }
}

/// An HTTP receiver on 127.0.0.1 that can stop listening and come back on
/// the same port.
struct Receiver {
    port: u16,
    inbox: Arc<Inbox>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Receiver {
    async fn start(answer: u16) -> Self {
        let inbox = Arc::new(Inbox::default());
        inbox.answer.store(answer, Ordering::SeqCst);
        let mut receiver = Self {
            port: 0,
            inbox,
            running: None,
        };
        receiver.up().await;
        receiver
    }

    /// A receiver that is not listening yet, on a port nobody listens on.
    fn reserved() -> Self {
        let inbox = Arc::new(Inbox::default());
        inbox.answer.store(200, Ordering::SeqCst);
        Self {
            port: super::free_port(),
            inbox,
            running: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    async fn up(&mut self) {
        assert!(self.running.is_none(), "already listening");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the receiver's port is free again");
        self.port = listener.local_addr().unwrap().port();
        let inbox = Arc::clone(&self.inbox);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let inbox = Arc::clone(&inbox);
                async move {
                    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let verified = inbox.verify(&headers, &body, &parsed);
                    inbox.requests.lock().unwrap().push(Received {
                        id: parsed["id"].as_str().unwrap_or("").to_owned(),
                        event_type: parsed["type"].as_str().unwrap_or("").to_owned(),
                        body: parsed,
                        verified,
                    });
                    let delay = inbox.delay_ms.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
                    StatusCode::from_u16(inbox.answer.load(Ordering::SeqCst)).unwrap()
                }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        self.running = Some((stop, task));
    }

    /// Stops listening: from here connections to the port are refused.
    async fn down(&mut self) {
        let (stop, task) = self.running.take().expect("listening");
        let _ = stop.send(());
        task.await.unwrap();
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err(),
            "the port still accepts connections"
        );
    }

    fn requests(&self) -> Vec<Received> {
        self.inbox.requests.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.requests();
            if got.len() >= count || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn register(api: &Api, auth: Auth, url: &str, events: Option<&[&str]>) -> Value {
    let mut body = json!({ "url": url });
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let created = api.post("/webhooks", auth, body).await.expect(201, "");
    created.data().clone()
}

async fn deliveries(api: &Api, auth: Auth, webhook: &str) -> Vec<Value> {
    api.get(format!("/webhooks/{webhook}/deliveries"), auth)
        .await
        .ok()
        .data()
        .as_array()
        .unwrap()
        .clone()
}

/// The delivery log once `done` holds for it, or its last state after `limit`.
async fn wait_for_log(
    api: &Api,
    auth: &Auth,
    webhook: &str,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let log = deliveries(api, auth.clone(), webhook).await;
        if done(&log) || Instant::now() >= deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn webhook_writer(api: &Api, actor: &Actor) -> Auth {
    Auth::Key(
        api.mint_key(
            &actor.cookie,
            actor.workspace_id,
            &["webhooks:write", "sessions:read"],
        )
        .await,
    )
}

#[tokio::test]
async fn a_receiver_down_for_30_s_gets_every_event_once_signed_and_in_order() {
    let t = TestApp::spawn_realtime_with(|c| {
        c.webhooks.allowed_targets = vec!["127.0.0.1".into()];
        c.webhooks.backoff_initial_ms = 200;
        c.webhooks.backoff_max_ms = 2_000;
        c.webhooks.max_attempts = 100;
        c.webhooks.poll_interval_ms = 50;
    })
    .await;
    let consumer = t.consumer("hook-consumer").await;
    let supplier = t.supplier("hook-supplier", BOGOTA, true).await;
    let writer = webhook_writer(&t, &consumer).await;
    let mut receiver = Receiver::start(200).await;
    let hook = register(&t, writer.clone(), &receiver.url(), None).await;
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{hook}");
    *receiver.inbox.secret.lock().unwrap() = secret.to_owned();
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(hook["events"].as_array().unwrap().len(), 6, "{hook}");

    let id = t.request(&consumer, BOGOTA, 120).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        got.len(),
        1,
        "session.assigned arrives while the receiver is up"
    );
    assert_eq!(got[0].event_type, "session.assigned");

    receiver.down().await;
    let down_at = Instant::now();
    t.post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    t.media
        .first_frame(id.parse().unwrap(), t.clock_now())
        .await;
    t.wait_for_state(&consumer, &id, "LIVE").await;
    t.post(format!("/sessions/{id}/end"), supplier.auth(), json!({}))
        .await
        .ok();
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed())).await;

    let log = deliveries(&t, writer.clone(), &hook_id).await;
    let types: Vec<&str> = log
        .iter()
        .map(|d| d["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["session.ended", "session.live", "session.assigned"],
        "newest first"
    );
    let live = &log[1];
    assert_eq!(live["state"], "PENDING", "{live}");
    assert!(
        live["attempts"].as_u64().unwrap() > 5,
        "retried while down: {live}"
    );
    assert_eq!(
        live["lastError"], "connection refused",
        "a class, not the network's words: {live}"
    );
    assert!(live["nextAttemptAt"].is_string(), "{live}");
    assert_eq!(
        log[0]["attempts"], 0,
        "the event after waits for the one before: {}",
        log[0]
    );

    receiver.up().await;
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    // Anything sent twice would arrive now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got_all = receiver.requests();
    assert_eq!(got_all.len(), 3, "every event exactly once: {got_all:?}");
    let types: Vec<&str> = got.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["session.assigned", "session.live", "session.ended"],
        "in order"
    );
    let mut ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each event has its own id");
    for (r, state) in got.iter().zip(["ASSIGNED", "LIVE", "ENDED"]) {
        assert!(r.verified, "signature of {}: {}", r.event_type, r.body);
        assert_eq!(r.body["data"]["id"], id.as_str());
        assert_eq!(
            r.body["data"]["state"], state,
            "the session as it was: {}",
            r.body
        );
        assert!(r.body["createdAt"].is_string());
    }

    let log = deliveries(&t, writer.clone(), &hook_id).await;
    assert!(log.iter().all(|d| d["state"] == "DELIVERED"), "{log:?}");
    assert!(
        log.iter()
            .all(|d| d["deliveredAt"].is_string() && d["lastStatusCode"] == 200)
    );
    assert_eq!(log[2]["attempts"], 1, "assigned went through at once");
    // session.live was the webhook's oldest undelivered event the whole
    // time the receiver was down: it was retried. session.ended waited
    // behind it (a webhook's events go in order), so it went once, after.
    assert!(log[1]["attempts"].as_u64().unwrap() > 5, "{}", log[1]);
    assert_eq!(log[0]["attempts"], 1, "{}", log[0]);
    let delivered_at =
        |d: &Value| lx_protocol::time::parse_millis(d["deliveredAt"].as_str().unwrap()).unwrap();
    assert!(delivered_at(&log[0]) >= delivered_at(&log[1]));
    assert_eq!(
        log.iter()
            .map(|d| d["eventId"].as_str().unwrap())
            .rev()
            .collect::<Vec<_>>(),
        got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "the log names the ids the receiver saw"
    );
}

#[tokio::test]
async fn webhooks_are_validated_scoped_and_private_to_their_workspace() {
    let t = TestApp::spawn().await;
    let owner = t.consumer("hook-owner").await;
    let other = t.consumer("hook-other").await;
    let writer = webhook_writer(&t, &owner).await;
    let other_writer = webhook_writer(&t, &other).await;

    for (body, field) in [
        (json!({"url": "ftp://example.com/hook"}), "url"),
        (json!({"url": "example.com/hook"}), "url"),
        (json!({"url": "http://"}), "url"),
        (json!({"url": "https://user:pw@example.com/"}), "url"),
        (json!({}), "url"),
        (json!({"url": 7}), "url"),
        (
            json!({"url": "https://example.com/", "events": ["session.paused"]}),
            "events",
        ),
        (
            json!({"url": "https://example.com/", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://example.com/", "secret": "mine"}),
            "secret: unknown field",
        ),
    ] {
        let resp = t.post("/webhooks", writer.clone(), body.clone()).await;
        let resp = resp.expect(400, "INVALID_INPUT");
        assert!(
            resp.message().starts_with(field),
            "{body} → {}",
            resp.message()
        );
    }
    t.post(
        "/webhooks",
        owner.auth(),
        json!({"url": "https://example.com/"}),
    )
    .await
    .expect(403, "NOT_AUTHORIZED");

    let hook = register(
        &t,
        writer.clone(),
        "https://example.com/lx",
        Some(&["session.live", "session.ended", "session.live"]),
    )
    .await;
    assert_eq!(hook["events"], json!(["session.live", "session.ended"]));
    let id = hook["id"].as_str().unwrap();

    let listed = t.get("/webhooks", owner.auth()).await.ok();
    assert_eq!(
        listed.data().as_array().unwrap().len(),
        1,
        "sessions:read may list"
    );
    assert!(
        listed.data()[0].get("secret").is_none(),
        "the secret is shown once"
    );
    assert!(deliveries(&t, owner.auth(), id).await.is_empty());

    let listed = t.get("/webhooks", other_writer.clone()).await.ok();
    assert!(listed.data().as_array().unwrap().is_empty());
    t.get(format!("/webhooks/{id}/deliveries"), other_writer.clone())
        .await
        .expect(404, "NOT_FOUND");
    t.call(
        Method::DELETE,
        format!("/webhooks/{id}"),
        other_writer.clone(),
        None,
    )
    .await
    .expect(404, "NOT_FOUND");
    t.get("/webhooks/nope/deliveries", writer.clone())
        .await
        .expect(400, "INVALID_INPUT");
    t.get(format!("/webhooks/{id}/deliveries?limit=0"), writer.clone())
        .await
        .expect(400, "INVALID_INPUT");

    t.call(
        Method::DELETE,
        format!("/webhooks/{id}"),
        owner.auth(),
        None,
    )
    .await
    .expect(403, "NOT_AUTHORIZED");
    t.call(
        Method::DELETE,
        format!("/webhooks/{id}"),
        writer.clone(),
        None,
    )
    .await
    .ok();
    t.get(format!("/webhooks/{id}/deliveries"), writer.clone())
        .await
        .expect(404, "NOT_FOUND");
    t.call(Method::DELETE, format!("/webhooks/{id}"), writer, None)
        .await
        .expect(404, "NOT_FOUND");

    // The owner's wallet holds every scope, webhooks:write included.
    let selected = t
        .post(
            "/auth/workspace/select",
            Auth::Cookie(owner.cookie.clone()),
            json!({"workspaceId": owner.workspace_id}),
        )
        .await
        .ok();
    let wallet = Auth::Cookie(cookie_from(&selected).unwrap_or(owner.cookie.clone()));
    register(&t, wallet.clone(), "https://example.com/wallet", None).await;
    assert_eq!(
        t.get("/webhooks", wallet)
            .await
            .ok()
            .data()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let openapi = t.get("/openapi.json", Auth::None).await.ok();
    for path in [
        "/api/v1/webhooks",
        "/api/v1/webhooks/{id}",
        "/api/v1/webhooks/{id}/deliveries",
    ] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "{path} in the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn a_receiver_that_always_fails_ends_failed_and_the_next_event_still_goes() {
    let t = TestApp::spawn_realtime_with(|c| {
        c.webhooks.allowed_targets = vec!["127.0.0.1".into()];
        c.webhooks.max_attempts = 3;
        c.webhooks.backoff_initial_ms = 50;
        c.webhooks.backoff_max_ms = 100;
        c.webhooks.poll_interval_ms = 20;
    })
    .await;
    let consumer = t.consumer("failing-consumer").await;
    let writer = webhook_writer(&t, &consumer).await;
    let receiver = Receiver::start(500).await;
    let hook = register(
        &t,
        writer.clone(),
        &receiver.url(),
        Some(&["session.cancelled"]),
    )
    .await;
    *receiver.inbox.secret.lock().unwrap() = hook["secret"].as_str().unwrap().to_owned();
    let hook_id = hook["id"].as_str().unwrap();

    let first = t.request(&consumer, BOGOTA, 60).await;
    t.call(
        Method::DELETE,
        format!("/sessions/{first}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();
    let log = wait_for_log(&t, &writer, hook_id, Duration::from_secs(10), |log| {
        log.first().is_some_and(|d| d["state"] == "FAILED")
    })
    .await;
    assert_eq!(log.len(), 1, "{log:?}");
    let failed = &log[0];
    assert_eq!(failed["state"], "FAILED", "{failed}");
    assert_eq!(failed["attempts"], 3);
    assert_eq!(failed["lastStatusCode"], 500);
    assert_eq!(failed["lastError"], "answered HTTP 500");
    assert!(failed["nextAttemptAt"].is_null() && failed["deliveredAt"].is_null());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.requests();
    assert_eq!(got.len(), 3, "no attempt after the last: {got:?}");
    assert!(got.iter().all(|r| r.verified && r.id == got[0].id));

    receiver.inbox.answer.store(204, Ordering::SeqCst);
    let second = t.request(&consumer, BOGOTA, 60).await;
    t.call(
        Method::DELETE,
        format!("/sessions/{second}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();
    let log = wait_for_log(&t, &writer, hook_id, Duration::from_secs(5), |log| {
        log.first().is_some_and(|d| d["state"] == "DELIVERED")
    })
    .await;
    assert_eq!(log[0]["state"], "DELIVERED", "{log:?}");
    assert_eq!(
        receiver.requests().last().unwrap().body["data"]["id"],
        second.as_str()
    );
}

#[tokio::test]
async fn deliveries_pending_when_the_server_is_killed_are_made_after_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = super::free_port();
    let fast = "[webhooks]\nbackoff_initial_ms = 100\nbackoff_max_ms = 300\npoll_interval_ms = 50\nmax_attempts = 1000\nallowed_targets = [\"127.0.0.1\"]\n";
    let server = super::ServerProcess::start_with(dir.path(), port, fast).await;
    let consumer = server.api.consumer("restart-hooks").await;
    let writer = webhook_writer(&server.api, &consumer).await;
    let mut receiver = Receiver::reserved();
    let hook = register(&server.api, writer.clone(), &receiver.url(), None).await;
    *receiver.inbox.secret.lock().unwrap() = hook["secret"].as_str().unwrap().to_owned();
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let session = server.api.request(&consumer, BOGOTA, 60).await;
    server
        .api
        .call(
            Method::DELETE,
            format!("/sessions/{session}"),
            consumer.auth(),
            None,
        )
        .await
        .ok();
    let log = wait_for_log(
        &server.api,
        &writer,
        &hook_id,
        Duration::from_secs(5),
        |log| {
            log.first()
                .is_some_and(|d| d["attempts"].as_u64() >= Some(2))
        },
    )
    .await;
    assert_eq!(log[0]["state"], "PENDING", "{log:?}");
    server.kill_9();

    receiver.up().await;
    let server = super::ServerProcess::start_with(dir.path(), port, fast).await;
    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_all = receiver.requests();
    assert_eq!(got_all.len(), 1, "{got_all:?}");
    assert_eq!(got[0].event_type, "session.cancelled");
    assert!(got[0].verified, "{:?}", got[0]);
    assert_eq!(got[0].body["data"]["id"], session.as_str());
    let log = deliveries(&server.api, writer, &hook_id).await;
    assert_eq!(log[0]["state"], "DELIVERED", "{log:?}");
}

#[tokio::test]
async fn webhook_targets_inside_the_servers_network_are_refused_at_registration() {
    let t = TestApp::spawn().await;
    let owner = t.consumer("ssrf-owner").await;
    let writer = webhook_writer(&t, &owner).await;
    for (url, class) in [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[::ffff:a9fe:a9fe]/hook", "link-local"),
        ("http://10.0.0.1/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://100.64.0.1/hook", "carrier-grade NAT"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://0.0.0.0:80/hook", "this network"),
        ("http://2130706433/hook", "loopback"),
    ] {
        let refused = t
            .post("/webhooks", writer.clone(), json!({ "url": url }))
            .await
            .expect(400, "INVALID_INPUT");
        assert!(
            refused.message().starts_with("url") && refused.message().contains(class),
            "{url} → {}",
            refused.message()
        );
    }
    assert!(
        t.get("/webhooks", writer.clone())
            .await
            .ok()
            .data()
            .as_array()
            .unwrap()
            .is_empty(),
        "none registered"
    );
}

#[tokio::test]
async fn a_webhook_aimed_inside_is_never_connected_to_and_its_log_names_only_a_class() {
    let t = TestApp::spawn_realtime_with(|c| {
        c.webhooks.poll_interval_ms = 20;
        c.webhooks.backoff_initial_ms = 20;
        c.webhooks.backoff_max_ms = 50;
    })
    .await;
    let consumer = t.consumer("pinned-consumer").await;
    let writer = webhook_writer(&t, &consumer).await;
    // A listener inside: it must never see a connection.
    let inside = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = inside.local_addr().unwrap().port();
    let reached = Arc::new(AtomicU16::new(0));
    let counter = Arc::clone(&reached);
    tokio::spawn(async move {
        while inside.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Two webhooks already stored with inner targets (registered before the
    // operator narrowed the allow-list, or a name that now resolves inside):
    // one by address, one by a name the pinned resolver must judge.
    let mut hooks = Vec::new();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
    ] {
        let hook = lx_server::store::Webhook {
            id: uuid::Uuid::new_v4(),
            workspace_id: consumer.workspace_id,
            url,
            events: lx_protocol::api::WebhookEventType::ALL.to_vec(),
            secret: "whsec_inner".into(),
            created_ms: t.clock_now(),
            failed_in_a_row: 0,
            disabled_ms: None,
        };
        t.app.store.insert_webhook(hook.clone()).await.unwrap();
        hooks.push(hook.id.to_string());
    }
    let session = t.request(&consumer, BOGOTA, 60).await;
    t.call(
        Method::DELETE,
        format!("/sessions/{session}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();
    for hook in &hooks {
        let log = wait_for_log(&t, &writer, hook, Duration::from_secs(5), |log| {
            log.first().is_some_and(|d| d["state"] == "FAILED")
        })
        .await;
        assert_eq!(log[0]["state"], "FAILED", "{log:?}");
        assert_eq!(log[0]["attempts"], 1, "not retried: {log:?}");
        let error = log[0]["lastError"].as_str().unwrap();
        assert!(error.starts_with("target not allowed"), "{error}");
        assert!(
            !error.contains(&port.to_string()),
            "no address leaks: {error}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(reached.load(Ordering::SeqCst), 0, "nothing reached inside");
}

#[tokio::test]
async fn a_tenant_with_dead_receivers_cannot_hold_up_another_tenants_events() {
    let t = TestApp::spawn_realtime_with(|c| {
        c.webhooks.allowed_targets = vec!["127.0.0.1".into()];
        c.webhooks.max_per_workspace = 100;
        c.webhooks.max_attempts = 1;
        c.webhooks.timeout_ms = 4_000;
        c.webhooks.poll_interval_ms = 20;
    })
    .await;
    // The attack: 80 webhooks at a receiver that takes the connection and
    // never answers, each holding a delivery slot until the timeout.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole = format!("http://{}/hook", black_hole.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((socket, _)) = black_hole.accept().await {
            holder.lock().unwrap().push(socket);
        }
    });
    let attacker = t.consumer("dead-tenant").await;
    let attacker_writer = webhook_writer(&t, &attacker).await;
    for _ in 0..80 {
        register(&t, attacker_writer.clone(), &hole, None).await;
    }
    let session = t.request(&attacker, BOGOTA, 60).await;
    t.call(
        Method::DELETE,
        format!("/sessions/{session}"),
        attacker.auth(),
        None,
    )
    .await
    .ok();
    let started = Instant::now();
    while held.lock().unwrap().len() < 8 && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        held.lock().unwrap().len(),
        8,
        "the dead tenant holds only its share of the slots"
    );

    // The honest tenant's event goes out at once, not after the timeout.
    let honest = t.consumer("live-tenant").await;
    let honest_writer = webhook_writer(&t, &honest).await;
    let receiver = Receiver::start(200).await;
    register(&t, honest_writer, &receiver.url(), None).await;
    let session = t.request(&honest, BOGOTA, 60).await;
    let sent = Instant::now();
    t.call(
        Method::DELETE,
        format!("/sessions/{session}"),
        honest.auth(),
        None,
    )
    .await
    .ok();
    let got = receiver.wait_for(1, Duration::from_secs(3)).await;
    let waited = sent.elapsed();
    assert_eq!(got.len(), 1);
    assert!(
        waited < Duration::from_secs(1),
        "delivered after {waited:?} while the dead tenant's 80 receivers hang"
    );
}

#[tokio::test]
async fn a_webhook_whose_events_keep_failing_is_disabled_and_says_so_until_enabled() {
    let t = TestApp::spawn_realtime_with(|c| {
        c.webhooks.allowed_targets = vec!["127.0.0.1".into()];
        c.webhooks.max_attempts = 1;
        c.webhooks.disable_after_failed_events = 2;
        c.webhooks.poll_interval_ms = 20;
    })
    .await;
    let consumer = t.consumer("failing-hooks").await;
    let writer = webhook_writer(&t, &consumer).await;
    let receiver = Receiver::start(500).await;
    let hook = register(&t, writer.clone(), &receiver.url(), None).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let session = t.request(&consumer, BOGOTA, 60).await;
        t.call(
            Method::DELETE,
            format!("/sessions/{session}"),
            consumer.auth(),
            None,
        )
        .await
        .ok();
    }
    wait_for_log(&t, &writer, &id, Duration::from_secs(5), |log| {
        log.len() == 2 && log.iter().all(|d| d["state"] == "FAILED")
    })
    .await;
    let listed = t.get("/webhooks", writer.clone()).await.ok();
    let shown = &listed.data()[0];
    assert_eq!(shown["failedEventsInARow"], 2, "{shown}");
    assert!(shown["disabledAt"].is_string(), "{shown}");
    // Disabled: a third event is neither queued nor sent.
    let session = t.request(&consumer, BOGOTA, 60).await;
    t.call(
        Method::DELETE,
        format!("/sessions/{session}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deliveries(&t, writer.clone(), &id).await.len(), 2);
    assert_eq!(receiver.requests().len(), 2);

    // Another workspace cannot turn it on; its own can.
    let other = t.consumer("failing-other").await;
    let other_writer = webhook_writer(&t, &other).await;
    t.post(format!("/webhooks/{id}/enable"), other_writer, json!({}))
        .await
        .expect(404, "NOT_FOUND");
    let enabled = t
        .post(format!("/webhooks/{id}/enable"), writer.clone(), json!({}))
        .await
        .ok();
    assert!(
        enabled.data().get("disabledAt").is_none(),
        "{}",
        enabled.data()
    );
    assert_eq!(enabled.data()["failedEventsInARow"], 0);
    let session = t.request(&consumer, BOGOTA, 60).await;
    t.call(
        Method::DELETE,
        format!("/sessions/{session}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();
    receiver.wait_for(3, Duration::from_secs(3)).await;
    assert_eq!(receiver.requests().len(), 3, "sent again once enabled");
}

#[tokio::test]
async fn two_replicas_workers_deliver_each_event_once() {
    let (a, b) = super::replicas::two_realtime_replicas(|c| {
        c.webhooks.allowed_targets = vec!["127.0.0.1".into()];
        c.webhooks.poll_interval_ms = 20;
    })
    .await;
    let consumer = a.consumer("hook-consumer").await;
    let writer = webhook_writer(&a, &consumer).await;
    let receiver = Receiver::start(200).await;
    // A slow receiver: each delivery stays in flight through many passes
    // of the other replica's worker.
    receiver.inbox.delay_ms.store(300, Ordering::SeqCst);
    let hook = register(&b, writer, &receiver.url(), Some(&["session.cancelled"])).await;
    *receiver.inbox.secret.lock().unwrap() = hook["secret"].as_str().unwrap().to_owned();
    // Sessions made and cancelled through either replica: both workers see
    // every event due.
    let mut sessions = Vec::new();
    for i in 0..12 {
        let replica = if i % 2 == 0 { &a } else { &b };
        let id = replica.request(&consumer, BOGOTA, 60).await;
        let other = if i % 2 == 0 { &b } else { &a };
        other
            .call(
                Method::DELETE,
                format!("/sessions/{id}"),
                consumer.auth(),
                None,
            )
            .await
            .ok();
        sessions.push(id);
    }
    let got = receiver
        .wait_for(sessions.len(), Duration::from_secs(20))
        .await;
    assert_eq!(got.len(), sessions.len());
    // Time for a second delivery of any of them to arrive, if one were made.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = receiver.requests();
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    let distinct: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "an event delivered twice: {ids:?}"
    );
    assert_eq!(got.len(), sessions.len());
    assert!(
        got.iter()
            .all(|r| r.verified && r.event_type == "session.cancelled")
    );
}
