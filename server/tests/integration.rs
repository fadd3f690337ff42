//! The server over real HTTP on loopback: lifecycle, auth, races, input
//! validation, sweeper, restart.

// Tests fail by panicking, helpers included.
#![allow(clippy::unwrap_used, clippy::zombie_processes)]

#[path = "integration/browser.rs"]
mod browser;
#[path = "integration/chain.rs"]
mod chain;
#[path = "common/chain.rs"]
mod chain_support;
mod common;
#[path = "integration/console.rs"]
mod console;
#[path = "integration/contract.rs"]
mod contract;
#[path = "integration/contracts.rs"]
mod contracts;
#[path = "integration/hostile.rs"]
mod hostile;
#[path = "integration/media.rs"]
mod media;
#[path = "integration/media_hostile.rs"]
mod media_hostile;
#[path = "integration/money.rs"]
mod money;
#[path = "integration/mqtt.rs"]
mod mqtt;
#[path = "common/mqtt.rs"]
mod mqtt_support;
#[path = "integration/replicas.rs"]
mod replicas;
#[path = "integration/trickle.rs"]
mod trickle;
#[path = "integration/trust.rs"]
mod trust;
#[path = "integration/webhooks.rs"]
mod webhooks;

use common::{Auth, BOGOTA, TestApp, cookie_from};
use futures_util::future::join_all;
use lx_protocol::wallet::{Address, SiweMessage, sign_personal};
use reqwest::Method;
use serde_json::json;

// ------------------------------------------------------------- lifecycle

#[tokio::test]
async fn a_session_walks_the_whole_lifecycle_over_http() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("acme-agents").await;
    let supplier = t.supplier("acme-drones", BOGOTA, true).await;

    let quote = t
        .get(
            format!(
                "/pricing/quote?lat={}&lng={}&durationSeconds=120",
                BOGOTA.0, BOGOTA.1
            ),
            consumer.auth(),
        )
        .await
        .ok();
    let rate = quote.data()["ratePerSecondMicroUsdc"].as_u64().unwrap();
    assert_eq!(
        rate, 1000,
        "one idle supplier and no demand price at the base rate"
    );

    let created = t
        .post(
            "/sessions",
            consumer.auth(),
            json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 120, "quoteId": quote.data()["quoteId"]}),
        )
        .await
        .expect(201, "");
    assert_eq!(created.data()["state"], "REQUESTED");
    assert_eq!(created.data()["holdMicroUsdc"], 120 * rate);
    let id = created.data()["id"].as_str().unwrap().to_owned();

    let dispatched = t
        .post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(dispatched.data()["state"], "ASSIGNED");
    assert_eq!(
        dispatched.data()["operatorWorkspaceId"],
        supplier.workspace_id.to_string()
    );
    assert_eq!(t.workspace(&supplier).await["availabilityState"], "BUSY");

    let frame = t
        .get(format!("/sessions/{id}/frame"), consumer.auth())
        .await;
    frame.expect(404, "FRAME_NOT_AVAILABLE");

    let started = t
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    assert_eq!(
        started.data()["state"],
        "ASSIGNED",
        "start does not flip the state"
    );
    let again = t
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    assert_eq!(
        again.data()["whipUrl"],
        started.data()["whipUrl"],
        "start is idempotent"
    );
    assert_eq!(t.media.provisioned.lock().unwrap().len(), 1);
    let producer = t
        .get(format!("/sessions/{id}/producer-token"), supplier.auth())
        .await
        .ok();
    assert_eq!(producer.data()["whipUrl"], started.data()["whipUrl"]);
    let viewer = t
        .get(format!("/sessions/{id}/viewer-token"), consumer.auth())
        .await
        .ok();
    assert_eq!(viewer.data()["whepUrl"], started.data()["whepUrl"]);
    t.get(format!("/sessions/{id}/producer-token"), consumer.auth())
        .await
        .expect(403, "NOT_AUTHORIZED");

    let first_frame_at = t.clock_now() + 700;
    t.media
        .first_frame(id.parse().unwrap(), first_frame_at)
        .await;
    t.wait_for_state(&consumer, &id, "LIVE").await;
    let live = t.session(&consumer, &id).await;
    assert_eq!(
        live["startedAt"],
        lx_protocol::time::format_millis(first_frame_at)
    );

    // A workspace without devices (trust tier 0) is metered on its location
    // heartbeats: it sends them from the point throughout.
    t.advance_heartbeating(&supplier, BOGOTA, 700 + 30_000)
        .await;
    t.post(format!("/sessions/{id}/pause"), consumer.auth(), json!({}))
        .await
        .ok();
    t.advance_heartbeating(&supplier, BOGOTA, 10_000).await;
    t.post(format!("/sessions/{id}/resume"), consumer.auth(), json!({}))
        .await
        .ok();
    t.advance_heartbeating(&supplier, BOGOTA, 20_000).await;

    let ended = t
        .post(format!("/sessions/{id}/end"), supplier.auth(), json!({}))
        .await
        .ok();
    let meter = &ended.data()["meter"];
    assert_eq!(ended.data()["state"], "ENDED");
    assert_eq!(meter["cleanSeconds"], 50, "{meter}");
    assert_eq!(meter["chargedMicroUsdc"], 50 * rate);
    assert_eq!(meter["feeMicroUsdc"], 5 * rate);
    assert_eq!(meter["operatorEarnedMicroUsdc"], 45 * rate);
    assert_eq!(ended.data()["windows"][0]["reason"], "PAUSED");
    assert_eq!(t.workspace(&supplier).await["availabilityState"], "ONLINE");
    assert_eq!(t.media.released.lock().unwrap().len(), 1);

    let listed = t.get("/sessions", consumer.auth()).await.ok();
    assert_eq!(listed.data().as_array().unwrap().len(), 1);
    let listed = t.get("/sessions?side=OPERATOR", supplier.auth()).await.ok();
    let open = t
        .get("/sessions?state=ASSIGNED,LIVE,PAUSED", consumer.auth())
        .await
        .ok();
    assert!(
        open.data().as_array().unwrap().is_empty(),
        "the only session has ended"
    );
    let done = t
        .get("/sessions?state=LIVE,ENDED", consumer.auth())
        .await
        .ok();
    assert_eq!(done.data().as_array().unwrap().len(), 1);
    assert_eq!(listed.data()[0]["id"], id.as_str());
}

#[tokio::test]
async fn siwe_login_with_a_real_signer_sets_a_working_cookie() {
    let t = TestApp::spawn().await;
    let key = k256::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let wallet = Address::from_signing_key(&key);
    let ws = t
        .create_workspace(&key, "wallet-owner", &["CONSUMER", "SUPPLIER"])
        .await;

    let ch = t
        .post(
            "/auth/wallet/challenge",
            &Auth::None,
            json!({"walletAddress": wallet.to_lower_hex()}),
        )
        .await
        .ok();
    let message = ch.data()["message"].as_str().unwrap();
    let parsed = SiweMessage::parse(message).expect("the challenge is an EIP-4361 message");
    assert_eq!(parsed.address, wallet);
    assert_eq!(parsed.chain_id, t.app.config.chain.chain_id);
    assert_eq!(parsed.nonce, ch.data()["nonce"].as_str().unwrap());

    // A signature by another key is refused, and burns the nonce.
    let intruder = k256::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let forged = sign_personal(&intruder, message.as_bytes());
    let body = json!({"walletAddress": wallet.to_checksum(), "nonce": ch.data()["nonce"], "signature": forged.to_string()});
    t.post("/auth/wallet/login", &Auth::None, body)
        .await
        .expect(401, "NOT_AUTHENTICATED");
    let good = sign_personal(&key, message.as_bytes());
    let body = json!({"walletAddress": wallet.to_checksum(), "nonce": ch.data()["nonce"], "signature": good.to_string()});
    t.post("/auth/wallet/login", &Auth::None, body)
        .await
        .expect(400, "INVALID_INPUT");

    let cookie = t.login(&key).await;
    let me = t.get("/me", Auth::Cookie(cookie.clone())).await.ok();
    assert_eq!(me.data()["kind"], "WALLET");
    assert_eq!(me.data()["walletAddress"], wallet.to_checksum());
    assert_eq!(me.data()["workspaceId"], ws.to_string());

    let tampered = format!("{}x", cookie);
    t.get("/me", Auth::Cookie(tampered))
        .await
        .expect(401, "NOT_AUTHENTICATED");

    // The cookie's owner manages keys; a key of the workspace cannot.
    let api_key = t.mint_key(&cookie, ws, &["sessions:read"]).await;
    assert!(api_key.starts_with("lxxn_test_"), "{api_key}");
    let keys = t
        .get(
            format!("/workspaces/{ws}/api-keys"),
            Auth::Cookie(cookie.clone()),
        )
        .await
        .ok();
    assert!(
        keys.body.to_string().find(&api_key).is_none(),
        "plaintext is shown once only"
    );
    t.get(format!("/workspaces/{ws}/api-keys"), Auth::Key(api_key))
        .await
        .expect(403, "NOT_AUTHORIZED");

    let out = t
        .post("/auth/logout", Auth::Cookie(cookie), json!({}))
        .await
        .ok();
    assert_eq!(cookie_from(&out).as_deref(), Some(""));
}

#[tokio::test]
async fn a_workspace_needs_the_wallets_own_signature() {
    let t = TestApp::spawn().await;
    let key = k256::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let wallet = Address::from_signing_key(&key);
    let ch = t
        .post(
            "/workspaces/challenge",
            &Auth::None,
            json!({"walletAddress": wallet.to_checksum()}),
        )
        .await
        .ok();
    let other = k256::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let sig = sign_personal(&other, ch.data()["message"].as_str().unwrap().as_bytes());
    let body = json!({"slug": "stolen", "name": "x", "walletAddress": wallet.to_checksum(),
        "signature": sig.to_string(), "nonce": ch.data()["nonce"], "roles": ["CONSUMER"]});
    t.post("/workspaces", &Auth::None, body)
        .await
        .expect(401, "NOT_AUTHENTICATED");
    t.create_workspace(&key, "taken-slug", &["CONSUMER"]).await;
    let ch = t
        .post(
            "/workspaces/challenge",
            &Auth::None,
            json!({"walletAddress": wallet.to_checksum()}),
        )
        .await
        .ok();
    let sig = sign_personal(&key, ch.data()["message"].as_str().unwrap().as_bytes());
    let body = json!({"slug": "taken-slug", "name": "x", "walletAddress": wallet.to_checksum(),
        "signature": sig.to_string(), "nonce": ch.data()["nonce"], "roles": ["CONSUMER"]});
    t.post("/workspaces", &Auth::None, body)
        .await
        .expect(409, "CONFLICT");
}

// ------------------------------------------------------------- races

#[tokio::test]
async fn of_32_concurrent_accepts_exactly_one_wins() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let supplier = t.supplier("supplier-co", BOGOTA, false).await;
    let id = t.request(&consumer, BOGOTA, 60).await;
    let offered = t
        .post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(offered.data()["state"], "REQUESTED");
    assert_eq!(
        offered.data()["offer"]["workspaceId"],
        supplier.workspace_id.to_string()
    );
    let offers = t.get("/sessions/offers", supplier.auth()).await.ok();
    assert_eq!(offers.data()[0]["sessionId"], id.as_str());

    let path = format!("/sessions/{id}/accept");
    let results = join_all((0..32).map(|_| t.post(&path, supplier.auth(), json!({})))).await;
    let winners = results.iter().filter(|r| r.status == 200).count();
    assert_eq!(winners, 1, "{results:?}");
    for loser in results.iter().filter(|r| r.status != 200) {
        assert_eq!(loser.status, 409, "{}", loser.body);
        assert_eq!(loser.code(), "INVALID_STATE");
        assert_eq!(loser.detail(), "session:accept:ASSIGNED");
    }
    assert_eq!(t.workspace(&supplier).await["availabilityState"], "BUSY");
}

#[tokio::test]
async fn end_racing_cancel_lets_exactly_one_through() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let supplier = t.supplier("supplier-co", BOGOTA, true).await;
    for round in 0..5 {
        let id = t.request(&consumer, BOGOTA, 60).await;
        t.post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        let end = format!("/sessions/{id}/end");
        let cancel = format!("/sessions/{id}");
        let ends = (0..16).map(|_| t.post(&end, supplier.auth(), json!({})));
        let cancels = (0..16).map(|_| t.call(Method::DELETE, &cancel, consumer.auth(), None));
        let (ends, cancels) = tokio::join!(join_all(ends), join_all(cancels));
        let all: Vec<_> = ends.iter().chain(cancels.iter()).collect();
        assert_eq!(
            all.iter().filter(|r| r.status == 200).count(),
            1,
            "round {round}"
        );
        for loser in all.iter().filter(|r| r.status != 200) {
            (*loser).clone().expect(409, "INVALID_STATE");
            assert!(loser.detail().ends_with(":CANCELLED"), "{}", loser.detail());
        }
        assert_eq!(t.workspace(&supplier).await["availabilityState"], "ONLINE");
    }
    // Once LIVE, cancel always loses to end.
    let id = t.request(&consumer, BOGOTA, 60).await;
    t.make_live(&consumer, &supplier, &id).await;
    let end = format!("/sessions/{id}/end");
    let cancel = format!("/sessions/{id}");
    let (e, c) = tokio::join!(
        join_all((0..8).map(|_| t.post(&end, consumer.auth(), json!({})))),
        join_all((0..8).map(|_| t.call(Method::DELETE, &cancel, consumer.auth(), None)))
    );
    assert_eq!(e.iter().filter(|r| r.status == 200).count(), 1);
    assert!(c.iter().all(|r| r.status == 409));
    assert_eq!(t.session(&consumer, &id).await["state"], "ENDED");
}

#[tokio::test]
async fn two_sessions_racing_for_the_only_supplier_get_one_assignment() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let supplier = t.supplier("supplier-co", BOGOTA, true).await;
    for _ in 0..8 {
        let a = t.request(&consumer, BOGOTA, 60).await;
        let b = t.request(&consumer, BOGOTA, 60).await;
        let (ra, rb) = tokio::join!(
            t.post(
                format!("/sessions/{a}/dispatch"),
                consumer.auth(),
                json!({})
            ),
            t.post(
                format!("/sessions/{b}/dispatch"),
                consumer.auth(),
                json!({})
            )
        );
        let (winner, loser, loser_id) = if ra.status == 200 {
            (ra, rb, b)
        } else {
            (rb, ra, a)
        };
        assert_eq!(winner.data()["state"], "ASSIGNED");
        loser.expect(503, "NO_COVERAGE");
        assert_eq!(t.session(&consumer, &loser_id).await["state"], "REQUESTED");
        let cancelled = t
            .post(
                "/sessions/cancel-all-assignments",
                supplier.auth(),
                json!({}),
            )
            .await
            .ok();
        assert_eq!(cancelled.data()["count"], 1);
        t.call(
            Method::DELETE,
            format!("/sessions/{loser_id}"),
            consumer.auth(),
            None,
        )
        .await
        .ok();
    }
}

// ------------------------------------------------------------- visibility and scopes

#[tokio::test]
async fn another_workspace_gets_404_on_every_session_route() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let supplier = t.supplier("supplier-co", BOGOTA, true).await;
    let stranger = t
        .actor(
            "stranger",
            &["CONSUMER", "SUPPLIER"],
            &[
                "sessions:read",
                "sessions:create",
                "sessions:operate",
                "pricing:read",
                "wallet:read",
                "operators:write",
            ],
        )
        .await;
    let id = t.request(&consumer, BOGOTA, 60).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    t.post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    let routes = [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::POST, "/dispatch"),
        (Method::POST, "/accept"),
        (Method::POST, "/start"),
        (Method::POST, "/end"),
        (Method::POST, "/pause"),
        (Method::POST, "/resume"),
        (Method::GET, "/producer-token"),
        (Method::GET, "/viewer-token"),
        (Method::GET, "/frame"),
    ];
    for (method, suffix) in routes {
        for auth in [stranger.auth(), Auth::Cookie(stranger.cookie.clone())] {
            let r = t
                .call(
                    method.clone(),
                    format!("/sessions/{id}{suffix}"),
                    &auth,
                    Some(json!({})),
                )
                .await;
            assert_eq!(
                (r.status.as_u16(), r.code()),
                (404, "SESSION_NOT_FOUND"),
                "{method} {suffix}: {}",
                r.body
            );
        }
    }
    assert!(
        t.get("/sessions", stranger.auth())
            .await
            .ok()
            .data()
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        t.session(&consumer, &id).await["state"],
        "ASSIGNED",
        "nothing changed"
    );
}

#[tokio::test]
async fn a_key_without_the_scope_gets_403() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let pricing_only = t
        .mint_key(&consumer.cookie, consumer.workspace_id, &["pricing:read"])
        .await;
    let read_only = t
        .mint_key(&consumer.cookie, consumer.workspace_id, &["sessions:read"])
        .await;
    let body = json!({"lat": 1.0, "lng": 1.0, "maxDurationSeconds": 60});
    let r = t
        .post("/sessions", Auth::Key(pricing_only.clone()), body)
        .await
        .expect(403, "NOT_AUTHORIZED");
    assert_eq!(r.detail(), "scope:sessions:create");
    t.get("/sessions", Auth::Key(pricing_only))
        .await
        .expect(403, "NOT_AUTHORIZED");
    let id = t.request(&consumer, BOGOTA, 60).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        Auth::Key(read_only.clone()),
        json!({}),
    )
    .await
    .expect(403, "NOT_AUTHORIZED");
    t.get(format!("/sessions/{id}"), Auth::Key(read_only))
        .await
        .ok();
    t.get("/me", &Auth::None)
        .await
        .expect(401, "NOT_AUTHENTICATED");
    t.get("/me", Auth::Key("lxxn_test_000000_nope".into()))
        .await
        .expect(401, "NOT_AUTHENTICATED");
}

#[tokio::test]
async fn a_revoked_key_works_for_60_seconds_then_is_refused() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let me = t.get("/me", consumer.auth()).await.ok();
    let key_id = me.data()["apiKeyId"].as_str().unwrap().to_owned();
    let path = format!(
        "/workspaces/{}/api-keys/{key_id}/revoke",
        consumer.workspace_id
    );
    let revoked = t
        .post(&path, Auth::Cookie(consumer.cookie.clone()), json!({}))
        .await
        .ok();
    assert!(revoked.data()["revokedAt"].is_string());
    t.clock.advance_ms(59_999);
    t.get("/sessions", consumer.auth()).await.ok();
    t.clock.advance_ms(1);
    let r = t
        .get("/sessions", consumer.auth())
        .await
        .expect(401, "REVOKED_API_KEY");
    assert_eq!(r.detail(), "auth:revoked");
    // Revoking again does not restart the grace window.
    let again = t
        .post(&path, Auth::Cookie(consumer.cookie.clone()), json!({}))
        .await
        .ok();
    assert_eq!(again.data()["revokedAt"], revoked.data()["revokedAt"]);
}

// ------------------------------------------------------------- input

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let supplier = t.supplier("supplier-co", BOGOTA, true).await;
    let ws = format!("/workspaces/{}", supplier.workspace_id);
    let cases: Vec<(Method, String, &common::Actor, serde_json::Value, &str)> = vec![
        (
            Method::POST,
            "/sessions".into(),
            &consumer,
            json!({"lat": "north", "lng": 1, "maxDurationSeconds": 5}),
            "lat",
        ),
        (
            Method::POST,
            "/sessions".into(),
            &consumer,
            json!({"lat": 1, "lng": 1}),
            "maxDurationSeconds",
        ),
        (
            Method::POST,
            "/sessions".into(),
            &consumer,
            json!({"lat": 91, "lng": 1, "maxDurationSeconds": 5}),
            "lat",
        ),
        (
            Method::POST,
            "/sessions".into(),
            &consumer,
            json!({"lat": 1, "lng": -181, "maxDurationSeconds": 5}),
            "lng",
        ),
        (
            Method::POST,
            "/sessions".into(),
            &consumer,
            json!({"lat": 1, "lng": 1, "maxDurationSeconds": 0}),
            "maxDurationSeconds",
        ),
        (
            Method::POST,
            "/sessions".into(),
            &consumer,
            json!({"lat": 1, "lng": 1, "maxDurationSeconds": -3}),
            "maxDurationSeconds",
        ),
        (
            Method::POST,
            "/sessions".into(),
            &consumer,
            json!({"lat": 1, "lng": 1, "maxDurationSeconds": 5, "quoteId": "abc"}),
            "quoteId",
        ),
        (
            Method::POST,
            "/sessions".into(),
            &consumer,
            json!({"lat": 1, "lng": 1, "maxDurationSeconds": 5, "geofenceRadiusMeters": 0}),
            "geofenceRadiusMeters",
        ),
        (
            Method::POST,
            "/sessions".into(),
            &consumer,
            json!([1, 2]),
            "body",
        ),
        (
            Method::PATCH,
            ws.clone(),
            &supplier,
            json!({"availabilityState": "SLEEPING"}),
            "availabilityState",
        ),
        (
            Method::PATCH,
            ws.clone(),
            &supplier,
            json!({"availabilityState": "BUSY"}),
            "availabilityState",
        ),
        (
            Method::PATCH,
            ws.clone(),
            &supplier,
            json!({"deviceKind": "BALLOON"}),
            "deviceKind",
        ),
        (
            Method::PATCH,
            ws.clone(),
            &supplier,
            json!({"coverageRadiusMeters": 0}),
            "coverageRadiusMeters",
        ),
        (
            Method::PATCH,
            ws.clone(),
            &supplier,
            json!({"coverageLat": 100}),
            "coverageLat",
        ),
        (
            Method::PATCH,
            ws.clone(),
            &supplier,
            json!({"autoAccept": "yes"}),
            "autoAccept",
        ),
        (
            Method::GET,
            "/pricing/quote?lat=1&lng=x&durationSeconds=5".into(),
            &consumer,
            json!(null),
            "lng",
        ),
        (
            Method::GET,
            "/pricing/quote?lat=1&lng=1".into(),
            &consumer,
            json!(null),
            "durationSeconds",
        ),
        (
            Method::GET,
            "/sessions?state=DANCING".into(),
            &consumer,
            json!(null),
            "state",
        ),
        (
            Method::GET,
            "/sessions?limit=0".into(),
            &consumer,
            json!(null),
            "limit",
        ),
        (
            Method::GET,
            "/sessions/not-a-uuid".into(),
            &consumer,
            json!(null),
            "id",
        ),
    ];
    for (method, path, actor, body, field) in cases {
        let body = (!body.is_null()).then_some(body);
        let r = t
            .call(method.clone(), &path, actor.auth(), body.clone())
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (400, "INVALID_INPUT"),
            "{method} {path} {body:?}: {}",
            r.body
        );
        assert!(
            r.message().contains(field),
            "{method} {path}: message {:?} does not name {field}",
            r.message()
        );
    }
    let r = t
        .post(
            "/auth/wallet/challenge",
            &Auth::None,
            json!({"walletAddress": "0x1234"}),
        )
        .await
        .expect(400, "INVALID_INPUT");
    assert!(r.message().contains("walletAddress"), "{}", r.message());
    // Nothing above was stored.
    assert!(
        t.get("/sessions", consumer.auth())
            .await
            .ok()
            .data()
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.workspace(&supplier).await["availabilityState"], "ONLINE");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_envelope() {
    let t = TestApp::spawn().await;
    t.get("/nowhere", &Auth::None)
        .await
        .expect(404, "NOT_FOUND");
    let r = t.call(Method::PUT, "/health", &Auth::None, None).await;
    assert_eq!(r.status.as_u16(), 405, "{}", r.body);
    assert_eq!(r.body["statusCode"], 405);
}

// ------------------------------------------------------------- credit and quotes

#[tokio::test]
async fn credit_covers_the_consumers_other_open_sessions_too() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let at = (10.0, 10.0);
    let quote = |_: ()| {
        t.get(
            format!(
                "/pricing/quote?lat={}&lng={}&durationSeconds=100",
                at.0, at.1
            ),
            consumer.auth(),
        )
    };
    // Quotes fix each session's rate, so every hold is known in advance.
    let quotes = join_all((0..10).map(|_| quote(()))).await;
    let hold = quotes[0].data()["estimatedTotalMicroUsdc"]
        .as_u64()
        .unwrap();
    assert!(
        quotes
            .iter()
            .all(|q| q.data()["estimatedTotalMicroUsdc"] == hold)
    );
    t.credit.set(consumer.wallet, 3 * hold);
    let body = |q: &common::Resp| json!({"lat": at.0, "lng": at.1, "maxDurationSeconds": 100, "quoteId": q.data()["quoteId"]});
    let results = join_all(
        quotes
            .iter()
            .map(|q| t.post("/sessions", consumer.auth(), body(q))),
    )
    .await;
    let created: Vec<_> = results.iter().filter(|r| r.status == 201).collect();
    assert_eq!(
        created.len(),
        3,
        "ten parallel requests against a pool for three"
    );
    for r in results.iter().filter(|r| r.status != 201) {
        r.clone().expect(400, "INSUFFICIENT_CREDIT");
    }
    // Cancelling one frees its hold for the next.
    let first = created[0].data()["id"].as_str().unwrap().to_owned();
    t.call(
        Method::DELETE,
        format!("/sessions/{first}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();
    let unused = results.iter().position(|r| r.status != 201).unwrap();
    t.post("/sessions", consumer.auth(), body(&quotes[unused]))
        .await
        .expect(201, "");
    // Full again; a top-up clears it without a restart, and the refused quote was not spent.
    let next = quote(()).await.ok();
    let next_hold = next.data()["estimatedTotalMicroUsdc"].as_u64().unwrap();
    t.post("/sessions", consumer.auth(), body(&next))
        .await
        .expect(400, "INSUFFICIENT_CREDIT");
    t.credit.set(consumer.wallet, 3 * hold + next_hold);
    t.post("/sessions", consumer.auth(), body(&next))
        .await
        .expect(201, "");
}

#[tokio::test]
async fn a_quote_locks_the_rate_once_for_30_seconds() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let _supplier = t.supplier("supplier-co", BOGOTA, true).await;
    let q = |_: ()| {
        t.get(
            format!(
                "/pricing/quote?lat={}&lng={}&durationSeconds=60",
                BOGOTA.0, BOGOTA.1
            ),
            consumer.auth(),
        )
    };
    let quote = q(()).await.ok();
    let quote_id = quote.data()["quoteId"].clone();
    let body =
        json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60, "quoteId": quote_id});
    // Demand rises after the quote, but the quoted rate holds.
    t.request(&consumer, BOGOTA, 60).await;
    let s = t
        .post("/sessions", consumer.auth(), body.clone())
        .await
        .expect(201, "");
    assert_eq!(
        s.data()["ratePerSecondMicroUsdc"],
        quote.data()["ratePerSecondMicroUsdc"]
    );
    let spot = t
        .post(
            "/sessions",
            consumer.auth(),
            json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60}),
        )
        .await
        .ok();
    assert!(
        spot.data()["ratePerSecondMicroUsdc"].as_u64()
            > quote.data()["ratePerSecondMicroUsdc"].as_u64()
    );
    let r = t
        .post("/sessions", consumer.auth(), body)
        .await
        .expect(400, "QUOTE_EXPIRED");
    assert_eq!(r.detail(), "quote:used");

    let late = q(()).await.ok();
    t.clock.advance_ms(30_000);
    let body = json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60, "quoteId": late.data()["quoteId"]});
    let r = t
        .post("/sessions", consumer.auth(), body)
        .await
        .expect(400, "QUOTE_EXPIRED");
    assert_eq!(r.detail(), "quote:expired");
}

// ------------------------------------------------------------- sweeper and offers

#[tokio::test]
async fn the_sweeper_expires_both_flavours_and_frees_the_supplier() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let supplier = t.supplier("supplier-co", BOGOTA, true).await;
    let body = json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60, "waitTimeoutSeconds": 1});
    let pre = t
        .post("/sessions", consumer.auth(), body)
        .await
        .expect(201, "");
    assert_eq!(
        pre.data()["waitTimeoutSeconds"],
        5,
        "clamped to the minimum"
    );
    let pre = pre.data()["id"].as_str().unwrap().to_owned();
    t.post(
        format!("/sessions/{pre}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    assert_eq!(t.app.sweep(t.clock_now()).await, 0);
    t.clock.advance_ms(5_000);
    assert_eq!(t.app.sweep(t.clock_now()).await, 1);
    let s = t.session(&consumer, &pre).await;
    assert_eq!(
        (s["state"].as_str(), s["expiryReason"].as_str()),
        (Some("EXPIRED"), Some("WAIT_TIMEOUT"))
    );
    assert!(s["meter"].is_null());
    assert_eq!(t.workspace(&supplier).await["availabilityState"], "ONLINE");

    let live = t.request(&consumer, BOGOTA, 60).await;
    t.make_live(&consumer, &supplier, &live).await;
    t.advance_heartbeating(&supplier, BOGOTA, 59_999).await;
    assert_eq!(t.app.sweep(t.clock_now()).await, 0);
    t.clock.advance_ms(120_000);
    assert_eq!(t.app.sweep(t.clock_now()).await, 1);
    let s = t.session(&consumer, &live).await;
    assert_eq!(
        (s["state"].as_str(), s["expiryReason"].as_str()),
        (Some("EXPIRED"), Some("MAX_DURATION"))
    );
    assert_eq!(
        s["meter"]["cleanSeconds"], 60,
        "metered up to the maximum only"
    );
    assert_eq!(t.workspace(&supplier).await["availabilityState"], "ONLINE");
}

#[tokio::test]
async fn an_unanswered_offer_moves_on_to_the_next_supplier() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let first = t.supplier("first", BOGOTA, false).await;
    t.clock.advance_ms(1_000);
    let second = t.supplier("second", BOGOTA, false).await;
    let id = t.request(&consumer, BOGOTA, 60).await;
    let s = t
        .post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(
        s.data()["offer"]["workspaceId"],
        first.workspace_id.to_string(),
        "the longest idle first"
    );
    t.get(format!("/sessions/{id}"), second.auth())
        .await
        .expect(404, "SESSION_NOT_FOUND");
    t.clock.advance_ms(15_000);
    t.app.sweep(t.clock_now()).await;
    let s = t.session(&consumer, &id).await;
    assert_eq!(s["offer"]["workspaceId"], second.workspace_id.to_string());
    let late = t
        .post(format!("/sessions/{id}/accept"), first.auth(), json!({}))
        .await;
    late.expect(404, "SESSION_NOT_FOUND");
    t.post(format!("/sessions/{id}/accept"), second.auth(), json!({}))
        .await
        .ok();
    assert_eq!(
        t.session(&consumer, &id).await["operatorWorkspaceId"],
        second.workspace_id.to_string()
    );
}

// ------------------------------------------------------------- documents and headers

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let t = TestApp::spawn().await;
    let doc = t.get("/openapi.json", &Auth::None).await;
    assert_eq!(doc.status, 200);
    let paths = doc.body["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/sessions",
        "/api/v1/sessions/{id}/accept",
        "/api/v1/pricing/quote",
        "/api/v1/auth/wallet/login",
        "/api/v1/workspaces/{id}/api-keys",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
}

#[tokio::test]
async fn every_write_returns_an_increasing_consistency_token() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    let a = t
        .post(
            "/sessions",
            consumer.auth(),
            json!({"lat": 1, "lng": 1, "maxDurationSeconds": 5}),
        )
        .await
        .ok();
    let b = t
        .post(
            "/sessions",
            consumer.auth(),
            json!({"lat": 1, "lng": 1, "maxDurationSeconds": 5}),
        )
        .await
        .ok();
    let token = |r: &common::Resp| {
        r.headers["x-lx-consistency-token"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(token(&b) > token(&a));
    assert_eq!(
        a.body["consistencyToken"],
        a.headers["x-lx-consistency-token"].to_str().unwrap()
    );
    let read = t.get("/sessions", consumer.auth()).await;
    assert!(read.headers.get("x-lx-consistency-token").is_none());
}

#[tokio::test]
async fn public_reads_show_coverage_demand_and_config() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("consumer-co").await;
    t.supplier("supplier-co", BOGOTA, true).await;
    t.request(&consumer, BOGOTA, 60).await;
    t.request(&consumer, BOGOTA, 60).await;
    let cov = t.get("/coverage", &Auth::None).await.ok();
    assert_eq!(cov.data()["circles"][0]["lat"], 4.71);
    assert_eq!(cov.data()["circles"][0]["deviceKind"], "DRONE");
    let demand = t.get("/demand", &Auth::None).await.ok();
    assert_eq!(demand.data()["cells"][0]["requests"], 2);
    let config = t.get("/config", &Auth::None).await.ok();
    assert_eq!(config.data()["baseRatePerSecondMicroUsdc"], 1000);
    assert_eq!(
        t.get("/health", &Auth::None).await.ok().data()["status"],
        "ok"
    );
}

// ------------------------------------------------------------- restart

/// The shipped binary on its own SQLite file, killed with SIGKILL.
struct ServerProcess {
    child: std::process::Child,
    api: common::Api,
}

impl ServerProcess {
    async fn start(dir: &std::path::Path, port: u16) -> Self {
        Self::start_with(dir, port, "").await
    }

    /// Starts it with `extra` TOML appended to its configuration.
    async fn start_with(dir: &std::path::Path, port: u16, extra: &str) -> Self {
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
                 [store]\npath = \"{}\"\n[credit]\ndefault_micro_usdc = 1000000000\n[log]\nfilter = \"warn\"\n{extra}",
                dir.join("lx.db").display()
            ),
        )
        .unwrap();
        Self::start_exactly(&config, port, &[]).await
    }

    /// Starts it on the configuration file `config`, listening on `port`,
    /// with `env` set.
    async fn start_exactly(config: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_lx-server"))
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start lx-server");
        let api = common::Api::new(format!("http://127.0.0.1:{port}/api/v1"));
        for _ in 0..200 {
            if let Ok(r) = api.http.get(format!("{}/health", api.base)).send().await
                && r.status() == 200
            {
                return Self { child, api };
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("lx-server did not come up on port {port}");
    }

    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A failed assertion must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_server_killed_mid_session_comes_back_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = ServerProcess::start(dir.path(), port).await;
    let api = &server.api;
    let consumer = api.consumer("consumer-co").await;
    let busy = api.supplier("busy-drone", BOGOTA, true).await;
    let manual = api.supplier("manual-ptz", (4.75, -74.05), false).await;
    let requested = api.request(&consumer, (4.0, -70.0), 60).await;
    let assigned = api.request(&consumer, BOGOTA, 120).await;
    api.post(
        format!("/sessions/{assigned}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let offered = api.request(&consumer, (4.75, -74.05), 90).await;
    api.post(
        format!("/sessions/{offered}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let cancelled = api.request(&consumer, BOGOTA, 30).await;
    api.call(
        Method::DELETE,
        format!("/sessions/{cancelled}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();

    let snapshot = |api: &common::Api| {
        let api = api.clone();
        let (consumer, busy, manual) = (consumer.clone(), busy.clone(), manual.clone());
        async move {
            let mut seen = Vec::new();
            seen.push(
                api.get("/sessions", consumer.auth())
                    .await
                    .ok()
                    .data()
                    .clone(),
            );
            seen.push(api.get("/sessions", busy.auth()).await.ok().data().clone());
            seen.push(
                api.get("/sessions/offers", manual.auth())
                    .await
                    .ok()
                    .data()
                    .clone(),
            );
            for actor in [&consumer, &busy, &manual] {
                seen.push(api.workspace(actor).await);
                seen.push(
                    api.get("/workspaces", Auth::Cookie(actor.cookie.clone()))
                        .await
                        .ok()
                        .data()
                        .clone(),
                );
            }
            seen
        }
    };
    let before = snapshot(api).await;
    assert_eq!(before[3 + 2]["availabilityState"], "BUSY", "{}", before[5]);
    server.kill_9();

    let server = ServerProcess::start(dir.path(), port).await;
    let api = &server.api;
    let after = snapshot(api).await;
    assert_eq!(before, after, "state after kill -9 and restart");

    // The dispatch index was rebuilt from the store: the busy supplier is
    // still taken, the offer can still be accepted, and a release is seen.
    let next = api.request(&consumer, BOGOTA, 60).await;
    api.post(
        format!("/sessions/{next}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .expect(503, "NO_COVERAGE");
    api.post(
        format!("/sessions/{offered}/accept"),
        manual.auth(),
        json!({}),
    )
    .await
    .ok();
    api.post("/sessions/cancel-all-assignments", busy.auth(), json!({}))
        .await
        .ok();
    let d = api
        .post(
            format!("/sessions/{next}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(
        d.data()["operatorWorkspaceId"],
        busy.workspace_id.to_string()
    );
    assert_eq!(
        api.session(&consumer, &requested).await["state"],
        "REQUESTED"
    );
    server.kill_9();
}

// ------------------------------------------------------------- generated bodies

mod generated_bodies {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const FIELDS: &[&str] = &[
        "lat",
        "lng",
        "maxDurationSeconds",
        "waitTimeoutSeconds",
        "geofenceRadiusMeters",
        "quoteId",
        "workspaceId",
        "walletAddress",
        "nonce",
        "signature",
        "slug",
        "name",
        "roles",
        "label",
        "environment",
        "scopes",
        "availabilityState",
        "coverageLat",
        "coverageLng",
        "coverageRadiusMeters",
        "deviceKind",
        "autoAccept",
        "offerTimeoutSeconds",
        "minTrustTier",
    ];

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON numbers are finite", |f| f.is_finite())
                .prop_map(Value::from),
            prop_oneof![Just(-91.0), Just(0.0), Just(90.0), Just(180.5), Just(1e300)]
                .prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            prop_oneof![
                Just("ONLINE"),
                Just("BUSY"),
                Just("DRONE"),
                Just("SUPPLIER"),
                Just("LIVE"),
                Just("sessions:create"),
                Just("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
                Just("00000000-0000-0000-0000-000000000000"),
            ]
            .prop_map(Value::from),
        ]
    }

    fn body() -> impl Strategy<Value = Value> {
        let leaf = scalar();
        let value = leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::hash_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        prop_oneof![
            3 => proptest::collection::vec((proptest::sample::select(FIELDS), value.clone()), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            1 => value,
        ]
    }

    #[test]
    fn no_generated_body_makes_any_route_fail_with_a_5xx() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (t, consumer, supplier, session, device) = rt.block_on(async {
            let t = TestApp::spawn().await;
            let consumer = t.consumer("consumer-co").await;
            let supplier = t.supplier("supplier-co", BOGOTA, true).await;
            let device = t.enroll(&supplier, "drone").await;
            let fix = device.sample(None, t.clock_now(), BOGOTA, 3.0);
            t.post(
                "/operators/heartbeat",
                device.auth(),
                json!({"sample": fix}),
            )
            .await
            .ok();
            let session = t.request(&consumer, BOGOTA, 60).await;
            (t, consumer, supplier, session, device)
        });
        let op = device.operator_id;
        let ws_c = consumer.workspace_id;
        let ws_s = supplier.workspace_id;
        let routes: Vec<(Method, String, Auth)> = vec![
            (Method::POST, "/auth/wallet/challenge".into(), Auth::None),
            (Method::POST, "/auth/wallet/login".into(), Auth::None),
            (
                Method::POST,
                "/auth/workspace/select".into(),
                Auth::Cookie(consumer.cookie.clone()),
            ),
            (Method::POST, "/workspaces/challenge".into(), Auth::None),
            (Method::POST, "/workspaces".into(), Auth::None),
            (
                Method::PATCH,
                format!("/workspaces/{ws_s}"),
                supplier.auth(),
            ),
            (
                Method::PATCH,
                format!("/workspaces/{ws_c}"),
                Auth::Cookie(consumer.cookie.clone()),
            ),
            (
                Method::POST,
                format!("/workspaces/{ws_c}/api-keys"),
                Auth::Cookie(consumer.cookie.clone()),
            ),
            (Method::POST, "/sessions".into(), consumer.auth()),
            (
                Method::POST,
                format!("/sessions/{session}/dispatch"),
                consumer.auth(),
            ),
            (
                Method::POST,
                format!("/sessions/{session}/accept"),
                supplier.auth(),
            ),
            (
                Method::POST,
                format!("/sessions/{session}/start"),
                supplier.auth(),
            ),
            (
                Method::POST,
                format!("/sessions/{session}/pause"),
                consumer.auth(),
            ),
            (
                Method::POST,
                format!("/sessions/{session}/resume"),
                consumer.auth(),
            ),
            (
                Method::POST,
                format!("/sessions/{session}/end"),
                consumer.auth(),
            ),
            (
                Method::DELETE,
                format!("/sessions/{session}"),
                consumer.auth(),
            ),
            (
                Method::POST,
                "/sessions/cancel-all-assignments".into(),
                supplier.auth(),
            ),
            (
                Method::POST,
                format!("/sessions/{session}/telemetry"),
                device.auth(),
            ),
            (Method::POST, "/operators/register".into(), Auth::None),
            (Method::POST, "/operators/heartbeat".into(), device.auth()),
            (
                Method::POST,
                format!("/operators/{op}/lock"),
                supplier.auth(),
            ),
            (
                Method::POST,
                format!("/operators/{op}/force-unlock"),
                supplier.auth(),
            ),
            (
                Method::POST,
                format!("/workspaces/{ws_s}/location"),
                supplier.auth(),
            ),
            (
                Method::POST,
                format!("/workspaces/{ws_s}/enrollment-tokens"),
                supplier.auth(),
            ),
        ];
        let config = ProptestConfig {
            cases: 48,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(payload in body())| {
            rt.block_on(async {
                for (method, path, auth) in &routes {
                    let r = t.call(method.clone(), path.clone(), auth, Some(payload.clone())).await;
                    prop_assert!(r.status.as_u16() < 500, "{method} {path} with {payload}: {} {}", r.status, r.body);
                    prop_assert!(r.body["statusCode"].is_number(), "{method} {path}: no envelope: {}", r.body);
                }
                Ok(())
            })?;
        });
        let queries = [
            "lat=1e999&lng=1&durationSeconds=1",
            "lat=&lng=&durationSeconds=",
            "lat=1&lng=1&durationSeconds=99999999999",
        ];
        rt.block_on(async {
            for q in queries {
                let r = t.get(format!("/pricing/quote?{q}"), consumer.auth()).await;
                assert!(r.status.as_u16() < 500, "{q}: {}", r.body);
            }
        });
    }
}

// ------------------------------------------------------------- devices and telemetry

mod devices {
    use super::*;
    use common::{Device, TestApp};
    use uuid::Uuid;

    /// A supplier with one enrolled drone hovering at `at`, heard from now.
    async fn fleet(t: &TestApp, at: (f64, f64)) -> (common::Actor, Device) {
        let supplier = t.supplier("fleet-co", at, true).await;
        let drone = t.enroll(&supplier, "drone-1").await;
        let sample = drone.sample(None, t.clock_now(), at, 3.0);
        t.post(
            "/operators/heartbeat",
            drone.auth(),
            json!({"batteryPercent": 87, "sample": sample}),
        )
        .await
        .ok();
        (supplier, drone)
    }

    #[tokio::test]
    async fn enrollment_tokens_are_listed_and_an_unused_one_revoked_for_good() {
        let t = TestApp::spawn().await;
        let supplier = t.supplier("token-co", BOGOTA, false).await;
        let other = t.supplier("other-co", BOGOTA, false).await;
        let path = format!("/workspaces/{}/enrollment-tokens", supplier.workspace_id);
        let mint = |auth| t.post(&path, auth, json!({}));
        let first = mint(supplier.auth()).await.expect(201, "").data().clone();
        t.clock.advance_ms(10);
        let second = mint(supplier.auth()).await.expect(201, "").data().clone();
        t.clock.advance_ms(10);
        let _used = t.enroll(&supplier, "drone-1").await;
        let listed = t.get(&path, supplier.auth()).await.ok().data().clone();
        let states: Vec<_> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["id"].as_str().unwrap().to_owned(),
                    x["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(states.len(), 3, "{listed}");
        assert_eq!(states[0].1, "USED", "newest first: {listed}");
        assert_eq!(
            states[1],
            (second["id"].as_str().unwrap().to_owned(), "ACTIVE".into())
        );
        assert_eq!(
            states[2],
            (first["id"].as_str().unwrap().to_owned(), "ACTIVE".into())
        );
        assert!(
            !listed
                .to_string()
                .contains(first["token"].as_str().unwrap()),
            "never the token"
        );

        // Revoked: gone from the list, and nobody enrolls with it.
        let revoke = |id: &str| {
            t.call(
                Method::DELETE,
                format!("{path}/{id}"),
                supplier.auth(),
                None,
            )
        };
        let revoked = revoke(second["id"].as_str().unwrap()).await.ok();
        assert_eq!(revoked.data()["state"], "REVOKED", "{}", revoked.body);
        assert_eq!(revoked.data()["expiresAt"], second["expiresAt"]);
        let listed = t.get(&path, supplier.auth()).await.ok().data().clone();
        assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
        let key = k256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let token = second["token"].as_str().unwrap();
        t.post(
            "/operators/register",
            Auth::None,
            json!({"enrollmentToken": token, "name": "late", "deviceKind": "DRONE",
                "address": Address::from_signing_key(&key).to_checksum(),
                "proof": sign_personal(&key, token.as_bytes()).to_string()}),
        )
        .await
        .expect(400, "INVALID_INPUT");
        // A used token, one revoked already, another workspace's, and a
        // malformed id are refused by name; another workspace's admin
        // cannot list these.
        revoke(&states[0].0).await.expect(404, "NOT_FOUND");
        revoke(second["id"].as_str().unwrap())
            .await
            .expect(404, "NOT_FOUND");
        let theirs = t
            .post(
                format!("/workspaces/{}/enrollment-tokens", other.workspace_id),
                other.auth(),
                json!({}),
            )
            .await
            .ok()
            .data()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        revoke(&theirs).await.expect(404, "NOT_FOUND");
        revoke("nothex").await.expect(400, "INVALID_INPUT");
        t.get(&path, other.auth())
            .await
            .expect(404, "WORKSPACE_NOT_FOUND");
    }

    #[tokio::test]
    async fn a_device_rotates_its_own_token_and_removes_itself_but_touches_no_sibling() {
        let t = TestApp::spawn().await;
        let (supplier, drone) = fleet(&t, BOGOTA).await;
        let sibling = t.enroll(&supplier, "drone-2").await;
        let rotate =
            |id: Uuid, auth| t.post(format!("/operators/{id}/rotate-token"), auth, json!({}));
        // A sibling's token reaches neither route for this device.
        rotate(drone.operator_id, sibling.auth())
            .await
            .expect(404, "NOT_FOUND");
        t.call(
            Method::DELETE,
            format!("/operators/{}", drone.operator_id),
            sibling.auth(),
            None,
        )
        .await
        .expect(404, "NOT_FOUND");
        // Rotated: the new token is the device, the old one nobody.
        let rotated = rotate(drone.operator_id, drone.auth()).await.ok();
        let fresh = Auth::Key(rotated.data()["deviceToken"].as_str().unwrap().to_owned());
        assert_ne!(fresh, drone.auth());
        let me = t.get("/me", fresh.clone()).await.ok();
        assert_eq!(me.data()["operatorId"], drone.operator_id.to_string());
        t.get("/me", drone.auth())
            .await
            .expect(401, "NOT_AUTHENTICATED");
        // The admin rotates too; then the device removes itself.
        let by_admin = rotate(drone.operator_id, supplier.auth()).await.ok();
        let latest = Auth::Key(by_admin.data()["deviceToken"].as_str().unwrap().to_owned());
        t.get("/me", fresh).await.expect(401, "NOT_AUTHENTICATED");
        t.call(
            Method::DELETE,
            format!("/operators/{}", drone.operator_id),
            latest.clone(),
            None,
        )
        .await
        .ok();
        t.get("/me", latest).await.expect(401, "NOT_AUTHENTICATED");
        let listed = t
            .get(
                format!("/workspaces/{}/operators", supplier.workspace_id),
                supplier.auth(),
            )
            .await
            .ok();
        let ids: Vec<_> = listed
            .data()
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].clone())
            .collect();
        assert_eq!(ids, vec![json!(sibling.operator_id.to_string())]);
    }

    #[tokio::test]
    async fn a_device_reconnects_with_its_saved_token_and_only_with_it() {
        let t = TestApp::spawn().await;
        let (supplier, drone) = fleet(&t, BOGOTA).await;
        // Gone quiet long enough to be counted out of reach.
        t.clock.advance_ms(120_000);
        let back = t
            .post("/operators/reconnect", drone.auth(), json!({}))
            .await
            .ok();
        assert_eq!(
            back.data()["id"],
            drone.operator_id.to_string(),
            "{}",
            back.body
        );
        assert_eq!(
            back.data()["workspaceId"],
            supplier.workspace_id.to_string()
        );
        let seen = back.data()["lastSeenAt"]
            .as_str()
            .map(lx_protocol::time::parse_millis);
        assert_eq!(seen, Some(Some(t.clock_now())), "{}", back.body);
        for refused in [
            Auth::None,
            supplier.auth(),
            Auth::Key("lxdv_not_a_device".into()),
        ] {
            t.post("/operators/reconnect", refused, json!({}))
                .await
                .expect(401, "NOT_AUTHENTICATED");
        }
    }

    #[tokio::test]
    async fn me_names_a_devices_operator_id_and_no_other_callers() {
        let t = TestApp::spawn().await;
        let (supplier, drone) = fleet(&t, BOGOTA).await;
        let me = t.get("/me", drone.auth()).await.ok();
        assert_eq!(
            me.data()["operatorId"],
            drone.operator_id.to_string(),
            "{}",
            me.body
        );
        assert_eq!(me.data()["workspaceId"], supplier.workspace_id.to_string());
        let admin = t.get("/me", supplier.auth()).await.ok();
        assert!(admin.data().get("operatorId").is_none(), "{}", admin.body);
    }

    #[tokio::test]
    async fn an_enrolled_drone_is_listed_connected_with_its_verified_position() {
        let t = TestApp::spawn().await;
        let (supplier, drone) = fleet(&t, BOGOTA).await;
        let list = t
            .get(
                format!("/workspaces/{}/operators", supplier.workspace_id),
                supplier.auth(),
            )
            .await
            .ok();
        let op = &list.data()[0];
        assert_eq!(op["id"], drone.operator_id.to_string());
        assert_eq!(op["connected"], true);
        assert_eq!(op["batteryPercent"], 87);
        assert_eq!(op["position"]["lat"], BOGOTA.0);
        assert_eq!(
            op["address"],
            Address::from_signing_key(&drone.key).to_checksum()
        );
        t.clock.advance_ms(61_000);
        let list = t
            .get(
                format!("/workspaces/{}/operators", supplier.workspace_id),
                supplier.auth(),
            )
            .await
            .ok();
        assert_eq!(list.data()[0]["connected"], false, "stale after 60 s");
    }

    #[tokio::test]
    async fn an_enrollment_token_works_once_and_the_proof_must_match() {
        let t = TestApp::spawn().await;
        let supplier = t.supplier("fleet-co", BOGOTA, true).await;
        let token = t
            .post(
                format!("/workspaces/{}/enrollment-tokens", supplier.workspace_id),
                supplier.auth(),
                json!({}),
            )
            .await
            .ok();
        let token = token.data()["token"].as_str().unwrap().to_owned();
        let key = k256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let other = k256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let body = |signer: &k256::ecdsa::SigningKey| {
            json!({"enrollmentToken": token, "name": "d", "deviceKind": "PTZ",
            "address": Address::from_signing_key(&key).to_checksum(), "proof": sign_personal(signer, token.as_bytes()).to_string()})
        };
        t.post("/operators/register", Auth::None, body(&other))
            .await
            .expect(400, "INVALID_SIGNATURE");
        t.post("/operators/register", Auth::None, body(&key))
            .await
            .expect(201, "");
        let again = t
            .post("/operators/register", Auth::None, body(&key))
            .await
            .expect(400, "INVALID_INPUT");
        assert!(
            again.message().contains("enrollmentToken"),
            "{}",
            again.message()
        );
        let consumer = t.consumer("consumer-co").await;
        t.post(
            format!("/workspaces/{}/enrollment-tokens", supplier.workspace_id),
            consumer.auth(),
            json!({}),
        )
        .await
        .expect(404, "WORKSPACE_NOT_FOUND");
    }

    #[tokio::test]
    async fn dispatch_picks_the_nearest_connected_drone_of_the_fleet() {
        let t = TestApp::spawn().await;
        let consumer = t.consumer("consumer-co").await;
        let supplier = t.supplier("fleet-co", BOGOTA, true).await;
        let far = t.enroll(&supplier, "far").await;
        let near = t.enroll(&supplier, "near").await;
        let silent = t.enroll(&supplier, "silent").await;
        let now = t.clock_now();
        for (d, at) in [(&far, (4.72, -74.06)), (&near, (4.7112, -74.0721))] {
            let s = d.sample(None, now, at, 2.0);
            t.post("/operators/heartbeat", d.auth(), json!({"sample": s}))
                .await
                .ok();
        }
        let _ = silent;
        let first = t.request(&consumer, BOGOTA, 60).await;
        let d = t
            .post(
                format!("/sessions/{first}/dispatch"),
                consumer.auth(),
                json!({}),
            )
            .await
            .ok();
        let session = t.get(format!("/sessions/{first}"), near.auth()).await.ok();
        assert_eq!(session.data()["id"], d.data()["id"]);
        assert_eq!(
            t.workspace(&supplier).await["availabilityState"],
            "ONLINE",
            "the fleet stays ONLINE"
        );
        let second = t.request(&consumer, BOGOTA, 60).await;
        t.post(
            format!("/sessions/{second}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        t.get(format!("/sessions/{second}"), far.auth()).await.ok();
        let third = t.request(&consumer, BOGOTA, 60).await;
        t.post(
            format!("/sessions/{third}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .expect(503, "NO_COVERAGE");
        t.post(format!("/sessions/{first}/end"), consumer.auth(), json!({}))
            .await
            .ok();
        t.post(
            format!("/sessions/{third}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    }

    /// What viem recovers from each point of `track` in `domain`.
    async fn recovered_by_viem(
        domain: &serde_json::Value,
        track: &serde_json::Value,
    ) -> Vec<String> {
        use tokio::io::AsyncWriteExt;
        let viem = crate::browser::tool(
            "LX_VIEM",
            crate::browser::root().join("tools/npm/node_modules/viem"),
            "npm install in tools/npm",
        );
        let script = common::manifest_dir().join("tests/verify/track.mjs");
        let mut node = tokio::process::Command::new("node")
            .arg(&script)
            .env("LX_VIEM", &viem)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let input = json!({"domain": domain, "points": track}).to_string();
        let mut stdin = node.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let out = node.wait_with_output().await.unwrap();
        let result: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("viem said: {}", String::from_utf8_lossy(&out.stdout)));
        result["recovered"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_track_is_verified_by_an_independent_eip712_implementation() {
        let t = TestApp::spawn().await;
        let consumer = t.consumer("consumer-co").await;
        let (_supplier, drone) = fleet(&t, BOGOTA).await;
        t.clock.advance_ms(1_000);
        let id = t.request(&consumer, BOGOTA, 60).await;
        t.post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        let sid: Uuid = id.parse().unwrap();
        let path = format!("/sessions/{id}/telemetry");
        let now = t.clock_now();
        let batch: Vec<_> = (0..3)
            .map(|i| {
                drone.sample(
                    Some(sid),
                    now + i,
                    (BOGOTA.0 + 0.0001 * i as f64, BOGOTA.1),
                    3.0,
                )
            })
            .collect();
        t.post(&path, drone.auth(), json!(batch)).await.ok();
        let track = t.get(&path, consumer.auth()).await.ok().data().clone();
        let domain = t.get("/config", Auth::None).await.ok().data()["telemetryDomain"].clone();
        assert_eq!(domain["name"], "Luxxon Telemetry", "{domain}");
        let points = track.as_array().unwrap();
        assert_eq!(points.len(), 3, "{track}");
        let device = lx_protocol::wallet::Address::from_signing_key(&drone.key).to_checksum();
        assert!(
            points.iter().all(|p| p["signer"] == device.as_str()),
            "{track}"
        );
        // viem recovers the device from every signature over its message...
        let recovered = recovered_by_viem(&domain, &track).await;
        assert_eq!(recovered, vec![device.clone(); 3]);
        // ...and not from a message with one coordinate changed.
        let mut altered = track.clone();
        altered[1]["signed"]["latE7"] = json!(points[1]["signed"]["latE7"].as_i64().unwrap() + 1);
        let recovered = recovered_by_viem(&domain, &altered).await;
        assert_eq!(recovered[0], device);
        assert_ne!(
            recovered[1], device,
            "a changed coordinate recovers someone else"
        );
    }

    #[tokio::test]
    async fn bad_telemetry_is_refused_with_its_own_code_and_nothing_is_stored() {
        let t = TestApp::spawn().await;
        let consumer = t.consumer("consumer-co").await;
        let (supplier, drone) = fleet(&t, BOGOTA).await;
        let other = t.enroll(&supplier, "drone-2").await;
        // Captures must come after the fleet's first fix (capture times grow).
        t.clock.advance_ms(1_000);
        let id = t.request(&consumer, BOGOTA, 60).await;
        t.post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        let sid: Uuid = id.parse().unwrap();
        let path = format!("/sessions/{id}/telemetry");
        let now = t.clock_now();

        let mut forged = drone.sample(Some(sid), now, BOGOTA, 3.0);
        forged["point"]["lat"] = json!(4.712);
        t.post(&path, drone.auth(), forged)
            .await
            .expect(400, "INVALID_SIGNATURE");
        let wrong = other.sample(Some(sid), now, BOGOTA, 3.0);
        t.post(&path, other.auth(), wrong)
            .await
            .expect(403, "WRONG_DEVICE");
        let future = drone.sample(Some(sid), now + 2_001, BOGOTA, 3.0);
        t.post(&path, drone.auth(), future)
            .await
            .expect(400, "FUTURE_TIMESTAMP");
        let early = drone.sample(Some(sid), now - 10_000, BOGOTA, 3.0);
        t.post(&path, drone.auth(), early)
            .await
            .expect(400, "STALE_TIMESTAMP");
        let good = drone.sample(Some(sid), now, BOGOTA, 3.0);
        t.post(&path, drone.auth(), good.clone()).await.ok();
        t.post(&path, drone.auth(), good)
            .await
            .expect(409, "REPLAYED_SEQUENCE");
        // A batch with one bad sample stores none of them.
        let a = drone.sample(Some(sid), now + 1, BOGOTA, 3.0);
        let mut b = drone.sample(Some(sid), now + 2, BOGOTA, 3.0);
        b["signature"] = a["signature"].clone();
        let r = t
            .post(&path, drone.auth(), json!([a.clone(), b]))
            .await
            .expect(400, "INVALID_SIGNATURE");
        assert!(r.message().starts_with("[1].signature"), "{}", r.message());
        t.post(&path, drone.auth(), json!([a])).await.ok();
        let bad = t
            .post(&path, drone.auth(), json!({"capturedAt": "x"}))
            .await
            .expect(400, "INVALID_INPUT");
        assert!(!bad.message().is_empty());
        let typed = drone.sample(Some(sid), now + 3, BOGOTA, 3.0);
        let r = t
            .post(&path, drone.auth(), json!([typed, {"sequence": "nine"}]))
            .await
            .expect(400, "INVALID_INPUT");
        assert!(r.message().starts_with("[1].sequence:"), "{}", r.message());
        t.post(&path, supplier.auth(), json!({}))
            .await
            .expect(403, "NOT_AUTHORIZED");
    }

    #[tokio::test]
    async fn the_meter_bills_only_the_seconds_the_drone_proves_it_was_there() {
        let t = TestApp::spawn().await;
        let consumer = t.consumer("consumer-co").await;
        let (supplier, drone) = fleet(&t, BOGOTA).await;
        let id = t.request(&consumer, BOGOTA, 120).await;
        t.post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        t.post(format!("/sessions/{id}/start"), drone.auth(), json!({}))
            .await
            .ok();
        let started = t.clock_now();
        t.media.first_frame(id.parse().unwrap(), started).await;
        t.wait_for_state(&consumer, &id, "LIVE").await;
        let sid: Uuid = id.parse().unwrap();
        let path = format!("/sessions/{id}/telemetry");
        // 60 s: inside the fence for 0..20, 400 m away for 20..35, back for 35..50,
        // then silent for 50..60. One sample a second, 100 ms into it.
        let away = (BOGOTA.0 + 400.0 / 111_195.0, BOGOTA.1);
        for i in 0..50 {
            let at = if (20..35).contains(&i) { away } else { BOGOTA };
            t.clock.set_ms(started + i * 1000 + 100);
            let s = drone.sample(Some(sid), started + i * 1000 + 100, at, 4.0);
            t.post(&path, drone.auth(), s).await.ok();
        }
        t.clock.set_ms(started + 60_000);
        let ended = t
            .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
            .await
            .ok();
        let meter = &ended.data()["meter"];
        // 50..52 still see the fix of 49.1 s; 52..60 are stale.
        assert_eq!(meter["cleanSeconds"], 35 + 2, "{meter}");
        assert_eq!(meter["failedSeconds"], 15 + 8, "{meter}");
        assert_eq!(meter["chargedMicroUsdc"], 37 * 1000);
        let reasons: Vec<_> = ended.data()["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["reason"].clone())
            .collect();
        assert_eq!(
            reasons,
            vec![json!("OUTSIDE_GEOFENCE"), json!("STALE_TELEMETRY")]
        );

        // Samples buffered through an outage still count within the settle delay.
        t.clock.set_ms(started + 70_000);
        let late: Vec<_> = (50..60)
            .map(|i| drone.sample(Some(sid), started + i * 1000 + 100, BOGOTA, 4.0))
            .collect();
        t.post(&path, drone.auth(), json!(late)).await.ok();
        t.clock.set_ms(started + 60_000 + 15_000);
        assert_eq!(t.app.sweep(t.clock_now()).await, 1);
        let final_ = t.session(&consumer, &id).await;
        assert_eq!(final_["meter"]["cleanSeconds"], 45, "{}", final_["meter"]);
        assert_eq!(final_["meterFinal"], true);
        t.clock.advance_ms(1);
        let too_late = drone.sample(Some(sid), started + 59_900, BOGOTA, 4.0);
        t.post(&path, drone.auth(), too_late)
            .await
            .expect(409, "INVALID_STATE");
        let device = t
            .get(format!("/operators/{}", drone.operator_id), supplier.auth())
            .await
            .ok();
        assert_eq!(
            device.data()["availabilityState"],
            "ONLINE",
            "freed at the end"
        );
    }

    #[tokio::test]
    async fn a_subsystem_lock_is_exclusive_until_released_or_forced() {
        let t = TestApp::spawn().await;
        let (supplier, drone) = fleet(&t, BOGOTA).await;
        // Locks are taken with operators:write (issue 15): the pilot's key
        // has it, and so does the supplier's other key.
        let pilot = t
            .mint_key(
                &supplier.cookie,
                supplier.workspace_id,
                &["sessions:operate", "operators:write"],
            )
            .await;
        let path = |verb: &str| format!("/operators/{}/{verb}", drone.operator_id);
        let cam = json!({"subsystem": "camera"});
        t.post(path("lock"), Auth::Key(pilot.clone()), cam.clone())
            .await
            .ok();
        t.post(path("lock"), Auth::Key(pilot.clone()), cam.clone())
            .await
            .ok();
        let held = t
            .post(path("lock"), supplier.auth(), cam.clone())
            .await
            .expect(409, "LOCKED");
        assert!(
            held.detail().starts_with("lock:heldBy:apiKey:"),
            "{}",
            held.detail()
        );
        t.post(path("unlock"), supplier.auth(), cam.clone())
            .await
            .expect(409, "LOCKED");
        t.post(path("force-unlock"), drone.auth(), cam.clone())
            .await
            .expect(403, "NOT_AUTHORIZED");
        t.post(path("force-unlock"), supplier.auth(), cam.clone())
            .await
            .ok();
        t.post(path("lock"), supplier.auth(), cam.clone())
            .await
            .ok();
        t.post(
            path("lock"),
            supplier.auth(),
            json!({"subsystem": "gimbal"}),
        )
        .await
        .ok();
        let op = t
            .get(format!("/operators/{}", drone.operator_id), supplier.auth())
            .await
            .ok();
        assert_eq!(op.data()["locks"].as_array().unwrap().len(), 2);
        t.post(path("lock"), supplier.auth(), json!({"subsystem": "wings"}))
            .await
            .expect(400, "INVALID_INPUT");
        // Nothing to release is a state, not bad input (the reference says 400).
        let stream = json!({"subsystem": "stream"});
        for verb in ["unlock", "force-unlock"] {
            let none = t
                .post(path(verb), supplier.auth(), stream.clone())
                .await
                .expect(409, "INVALID_STATE");
            assert_eq!(none.detail(), "lock:notLocked", "{verb}");
        }
        t.call(
            Method::DELETE,
            format!("/operators/{}", drone.operator_id),
            supplier.auth(),
            None,
        )
        .await
        .ok();
        t.get(format!("/operators/{}", drone.operator_id), supplier.auth())
            .await
            .expect(404, "NOT_FOUND");
        t.post("/operators/heartbeat", drone.auth(), json!({}))
            .await
            .expect(401, "NOT_AUTHENTICATED");
    }

    #[tokio::test]
    async fn a_device_reclaims_only_its_own_assignments() {
        let t = TestApp::spawn().await;
        let consumer = t.consumer("consumer-co").await;
        let (supplier, first) = fleet(&t, BOGOTA).await;
        let second = t.enroll(&supplier, "drone-2").await;
        let fix = second.sample(None, t.clock_now(), (4.72, -74.07), 3.0);
        t.post(
            "/operators/heartbeat",
            second.auth(),
            json!({"sample": fix}),
        )
        .await
        .ok();
        let a = t.request(&consumer, BOGOTA, 60).await;
        let b = t.request(&consumer, BOGOTA, 60).await;
        t.post(
            format!("/sessions/{a}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        t.post(
            format!("/sessions/{b}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        let r = t
            .post("/sessions/cancel-all-assignments", second.auth(), json!({}))
            .await
            .ok();
        assert_eq!(r.data()["count"], 1);
        assert_eq!(
            t.session(&consumer, &a).await["state"],
            "ASSIGNED",
            "the first drone's session stays"
        );
        assert_eq!(t.session(&consumer, &b).await["state"], "CANCELLED");
        let _ = first;
    }

    #[tokio::test]
    async fn a_workspace_location_heartbeat_refuses_replays() {
        let t = TestApp::spawn().await;
        let supplier = t.supplier("phone-co", BOGOTA, true).await;
        let path = format!("/workspaces/{}/location", supplier.workspace_id);
        let body = |seq: u64| json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "accuracyMeters": 8.0, "sequence": seq});
        t.post(&path, supplier.auth(), body(5)).await.ok();
        t.post(&path, supplier.auth(), body(5))
            .await
            .expect(409, "REPLAYED_SEQUENCE");
        t.post(&path, supplier.auth(), body(4))
            .await
            .expect(409, "REPLAYED_SEQUENCE");
        t.post(&path, supplier.auth(), body(6)).await.ok();
    }
}
