//! Trust tiers and the supply side's attacks (DESIGN.md 4.13), each written
//! as the attack against the real server over HTTP: a workspace without
//! devices taking sessions that ask for signed telemetry, a looped clip
//! without location evidence, a supplier that accepts and never starts, a
//! claim of coverage it cannot serve, and samples backdated after the end.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Actor, BOGOTA, Device, TestApp};

/// About `metres` north of Bogotá's point.
fn north(metres: f64) -> (f64, f64) {
    (BOGOTA.0 + metres / 111_195.0, BOGOTA.1)
}

fn reasons(session: &Value) -> Vec<String> {
    session["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["reason"].as_str().unwrap().to_owned())
        .collect()
}

async fn fleet(t: &TestApp, slug: &str, at: (f64, f64)) -> (Actor, Device) {
    t.fleet(slug, at).await
}

async fn create(t: &TestApp, consumer: &Actor, body: Value) -> String {
    let created = t
        .post("/sessions", consumer.auth(), body)
        .await
        .expect(201, "");
    created.data()["id"].as_str().unwrap().to_owned()
}

async fn dispatch(t: &TestApp, consumer: &Actor, id: &str) -> crate::common::Resp {
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
}

fn quote_path(at: (f64, f64)) -> String {
    format!(
        "/pricing/quote?lat={}&lng={}&durationSeconds=60",
        at.0, at.1
    )
}

#[tokio::test]
async fn a_workspace_without_devices_never_gets_a_session_that_asks_for_tier_1() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("tier-consumer").await;
    let phone = t.supplier("phone-co", BOGOTA, true).await;
    assert_eq!(t.workspace(&phone).await["trustTier"], 0);
    let quote = t.get(quote_path(BOGOTA), consumer.auth()).await.ok();
    assert_eq!(quote.data()["trustTier"], 0, "only tier 0 covers it");

    // Bad tiers are refused by name, never stored.
    for bad in [json!(2), json!(-1), json!(256), json!("one"), json!(1.5)] {
        let r = t
            .post(
                "/sessions",
                consumer.auth(),
                json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60, "minTrustTier": bad}),
            )
            .await
            .expect(400, "INVALID_INPUT");
        assert!(r.message().contains("minTrustTier"), "{}", r.body);
    }

    let signed_only = create(
        &t,
        &consumer,
        json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60, "minTrustTier": 1}),
    )
    .await;
    assert_eq!(t.session(&consumer, &signed_only).await["minTrustTier"], 1);
    let refused = dispatch(&t, &consumer, &signed_only)
        .await
        .expect(503, "NO_COVERAGE");
    assert_eq!(refused.detail(), "dispatch:noCoverage");
    assert_eq!(
        t.workspace(&phone).await["availabilityState"],
        "ONLINE",
        "the phone was not touched"
    );

    // A fleet with a signing drone comes into range: it gets the session.
    t.clock.advance_ms(1_000);
    let (fleet_ws, drone) = fleet(&t, "fleet-co", north(300.0)).await;
    assert_eq!(t.workspace(&fleet_ws).await["trustTier"], 1);
    let operators = t
        .get(
            format!("/workspaces/{}/operators", fleet_ws.workspace_id),
            fleet_ws.auth(),
        )
        .await
        .ok();
    assert_eq!(operators.data()[0]["trustTier"], 1);
    let quote = t.get(quote_path(BOGOTA), consumer.auth()).await.ok();
    assert_eq!(quote.data()["trustTier"], 1, "the best tier in range");
    let assigned = dispatch(&t, &consumer, &signed_only).await.ok();
    assert_eq!(
        assigned.data()["operatorWorkspaceId"],
        fleet_ws.workspace_id.to_string()
    );
    assert_eq!(assigned.data()["operatorId"], drone.operator_id.to_string());
    assert_eq!(assigned.data()["trustTier"], 1);

    // A session that accepts any tier goes to the longest idle: the phone.
    let any = t.request(&consumer, BOGOTA, 60).await;
    assert_eq!(t.session(&consumer, &any).await["minTrustTier"], 0);
    let assigned = dispatch(&t, &consumer, &any).await.ok();
    assert_eq!(
        assigned.data()["operatorWorkspaceId"],
        phone.workspace_id.to_string()
    );
    assert_eq!(assigned.data()["trustTier"], 0);

    // Offered by hand, a tier-1 session still cannot be taken without a device.
    let manual = t.supplier("manual-co", BOGOTA, false).await;
    t.call(
        Method::PATCH,
        format!("/workspaces/{}", fleet_ws.workspace_id),
        fleet_ws.auth(),
        Some(json!({"availabilityState": "OFFLINE"})),
    )
    .await
    .ok();
    let another = create(
        &t,
        &consumer,
        json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60, "minTrustTier": 1}),
    )
    .await;
    dispatch(&t, &consumer, &another)
        .await
        .expect(503, "NO_COVERAGE");
    t.post(
        format!("/sessions/{another}/accept"),
        manual.auth(),
        json!({}),
    )
    .await
    .expect(404, "SESSION_NOT_FOUND");
}

#[tokio::test]
async fn the_server_default_tier_applies_when_the_request_names_none() {
    let t = TestApp::spawn_with(|c| c.dispatch.default_min_trust_tier = 1).await;
    let consumer = t.consumer("strict-consumer").await;
    let _phone = t.supplier("phone-co", BOGOTA, true).await;
    let id = t.request(&consumer, BOGOTA, 60).await;
    assert_eq!(t.session(&consumer, &id).await["minTrustTier"], 1);
    dispatch(&t, &consumer, &id)
        .await
        .expect(503, "NO_COVERAGE");
    let config = t.get("/config", crate::common::Auth::None).await.ok();
    assert_eq!(config.data()["defaultMinTrustTier"], 1);
    // Asking for less than the default is the consumer's choice.
    let any = create(
        &t,
        &consumer,
        json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60, "minTrustTier": 0}),
    )
    .await;
    dispatch(&t, &consumer, &any).await.ok();
}

#[tokio::test]
async fn a_looped_clip_without_location_heartbeats_earns_nothing() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("clip-consumer").await;
    let phone = t.supplier("clip-co", BOGOTA, true).await;

    // The attack: LIVE on media alone, no heartbeat at all.
    let silent = t.request(&consumer, BOGOTA, 120).await;
    t.make_live(&consumer, &phone, &silent).await;
    t.clock.advance_ms(30_000);
    let ended = t
        .post(
            format!("/sessions/{silent}/end"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    let meter = &ended.data()["meter"];
    assert_eq!(
        (
            meter["cleanSeconds"].as_u64(),
            meter["failedSeconds"].as_u64()
        ),
        (Some(0), Some(30)),
        "{meter}"
    );
    assert_eq!(meter["chargedMicroUsdc"], 0);
    assert_eq!(reasons(ended.data()), vec!["STALE_TELEMETRY"]);
    assert_eq!(ended.data()["trustTier"], 0);
    t.clock.advance_ms(20_000);
    t.app.sweep(t.clock_now()).await;
    let final_ = t.session(&consumer, &silent).await;
    assert_eq!(
        (
            final_["meterFinal"].as_bool(),
            final_["meter"]["cleanSeconds"].as_u64()
        ),
        (Some(true), Some(0))
    );

    // Heartbeats, but from 400 m away: outside the 150 m geofence.
    let away = t.request(&consumer, BOGOTA, 120).await;
    t.make_live(&consumer, &phone, &away).await;
    t.advance_heartbeating(&phone, north(400.0), 30_000).await;
    let ended = t
        .post(format!("/sessions/{away}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    assert_eq!(ended.data()["meter"]["cleanSeconds"], 0);
    assert_eq!(reasons(ended.data()), vec!["OUTSIDE_GEOFENCE"]);

    // The honest supplier: heartbeats from the point, every 2 s. (The last
    // session's heartbeats are stale by now.)
    t.clock.advance_ms(20_000);
    let honest = t.request(&consumer, BOGOTA, 120).await;
    t.make_live(&consumer, &phone, &honest).await;
    t.advance_heartbeating(&phone, BOGOTA, 30_000).await;
    let ended = t
        .post(
            format!("/sessions/{honest}/end"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    let meter = &ended.data()["meter"];
    assert_eq!(meter["cleanSeconds"], 30, "{meter}");
    assert_eq!(meter["chargedMicroUsdc"], 30_000);
    assert!(reasons(ended.data()).is_empty());
}

#[tokio::test]
async fn a_heartbeat_that_stops_mid_session_stops_the_meter() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("gap-consumer").await;
    let phone = t.supplier("gap-co", BOGOTA, true).await;
    let id = t.request(&consumer, BOGOTA, 120).await;
    t.make_live(&consumer, &phone, &id).await;
    t.advance_heartbeating(&phone, BOGOTA, 20_000).await;
    // Silent for 40 s: the last heartbeat (at 20 s) keeps 10 s clean.
    t.clock.advance_ms(40_000);
    let ended = t
        .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    let meter = &ended.data()["meter"];
    assert_eq!(
        (
            meter["cleanSeconds"].as_u64(),
            meter["failedSeconds"].as_u64()
        ),
        (Some(30), Some(30)),
        "{meter}"
    );
    assert_eq!(reasons(ended.data()), vec!["STALE_TELEMETRY"]);
}

#[tokio::test]
async fn a_supplier_that_accepts_and_stays_silent_is_cooled_down_and_skipped() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("wait-consumer").await;
    let silent = t.supplier("silent-co", BOGOTA, true).await;
    t.clock.advance_ms(1_000);
    let honest = t.supplier("honest-co", BOGOTA, true).await;
    let id = t.request(&consumer, BOGOTA, 60).await;
    let assigned = dispatch(&t, &consumer, &id).await.ok();
    assert_eq!(
        assigned.data()["operatorWorkspaceId"],
        silent.workspace_id.to_string(),
        "the longest idle"
    );
    // It provisions media, then never publishes.
    t.post(format!("/sessions/{id}/start"), silent.auth(), json!({}))
        .await
        .ok();
    t.clock.advance_ms(29_999);
    t.app.sweep(t.clock_now()).await;
    assert_eq!(t.session(&consumer, &id).await["state"], "ASSIGNED");

    t.clock.advance_ms(1);
    let reclaimed_at = t.clock_now();
    assert_eq!(t.app.sweep(reclaimed_at).await, 1);
    let s = t.session(&consumer, &id).await;
    assert_eq!(
        s["state"], "ASSIGNED",
        "given to the next candidate at once"
    );
    assert_eq!(s["operatorWorkspaceId"], honest.workspace_id.to_string());
    assert_eq!(
        t.media.released.lock().unwrap().len(),
        1,
        "the silent supplier's media is torn down"
    );
    let cooled = t.workspace(&silent).await;
    assert_eq!(cooled["availabilityState"], "ONLINE");
    assert_eq!(
        cooled["coolingDownUntil"],
        lx_protocol::time::format_millis(reclaimed_at + 300_000)
    );
    t.get(format!("/sessions/{id}"), silent.auth())
        .await
        .expect(404, "SESSION_NOT_FOUND");

    // The honest one hands it back; a fresh dispatch within the cool-down
    // skips the silent one although it has been idle longest.
    t.call(
        Method::DELETE,
        format!("/sessions/{id}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();
    let next = t.request(&consumer, BOGOTA, 60).await;
    let s = dispatch(&t, &consumer, &next).await.ok();
    assert_eq!(
        s.data()["operatorWorkspaceId"],
        honest.workspace_id.to_string()
    );
    let alone = t.request(&consumer, BOGOTA, 60).await;
    dispatch(&t, &consumer, &alone)
        .await
        .expect(503, "NO_COVERAGE");

    // Once the cool-down is over it is a candidate again.
    t.clock.set_ms(reclaimed_at + 300_000);
    let s = dispatch(&t, &consumer, &alone).await.ok();
    assert_eq!(
        s.data()["operatorWorkspaceId"],
        silent.workspace_id.to_string()
    );
}

#[tokio::test]
async fn a_silent_device_and_its_workspace_cool_down_and_the_session_waits_again() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("fleet-consumer").await;
    let (supplier, drone) = fleet(&t, "fleet-co", BOGOTA).await;
    let id = t.request(&consumer, BOGOTA, 60).await;
    let s = dispatch(&t, &consumer, &id).await.ok();
    assert_eq!(s.data()["operatorId"], drone.operator_id.to_string());
    t.clock.advance_ms(30_000);
    let now = t.clock_now();
    t.app.sweep(now).await;
    let s = t.session(&consumer, &id).await;
    assert_eq!(s["state"], "REQUESTED", "nobody else covers it");
    assert!(
        s["operatorWorkspaceId"].is_null() && s["operatorId"].is_null(),
        "{s}"
    );
    assert!(s["trustTier"].is_null(), "{s}");
    let until = lx_protocol::time::format_millis(now + 300_000);
    let device = t
        .get(format!("/operators/{}", drone.operator_id), supplier.auth())
        .await
        .ok();
    assert_eq!(device.data()["availabilityState"], "ONLINE", "freed");
    assert_eq!(device.data()["coolingDownUntil"], until.as_str());
    let listed = t
        .get(
            format!("/workspaces/{}/operators", supplier.workspace_id),
            supplier.auth(),
        )
        .await
        .ok();
    assert_eq!(listed.data()[0]["coolingDownUntil"], until.as_str());
    assert_eq!(
        t.workspace(&supplier).await["coolingDownUntil"],
        until.as_str()
    );
    dispatch(&t, &consumer, &id)
        .await
        .expect(503, "NO_COVERAGE");
}

#[tokio::test]
async fn a_coverage_radius_above_the_kinds_cap_is_refused_by_name() {
    let t = TestApp::spawn().await;
    let supplier = t.supplier("wide-co", BOGOTA, true).await;
    let patch = |body: Value| {
        t.call(
            Method::PATCH,
            format!("/workspaces/{}", supplier.workspace_id),
            supplier.auth(),
            Some(body),
        )
    };
    // The attack: a 1,000 km circle.
    let r = patch(json!({"coverageRadiusMeters": 1_000_000}))
        .await
        .expect(400, "INVALID_INPUT");
    assert!(
        r.message().contains("coverageRadiusMeters") && r.message().contains("10000"),
        "{}",
        r.body
    );
    assert!(r.message().contains("DRONE"), "{}", r.body);
    assert_eq!(t.workspace(&supplier).await["coverageRadiusMeters"], 2000);
    patch(json!({"coverageRadiusMeters": 10_000})).await.ok();
    // A phone may not claim what a drone may; changing the kind is checked too.
    let r = patch(json!({"deviceKind": "PHONE"}))
        .await
        .expect(400, "INVALID_INPUT");
    assert!(r.message().contains("5000"), "{}", r.body);
    patch(json!({"deviceKind": "PHONE", "coverageRadiusMeters": 5_000}))
        .await
        .ok();
    patch(json!({"coverageRadiusMeters": 0}))
        .await
        .expect(400, "INVALID_INPUT");
    // A workspace without a kind gets the default cap.
    let bare = t
        .actor("bare-co", &["SUPPLIER"], &["operators:write"])
        .await;
    let r = t
        .call(
            Method::PATCH,
            format!("/workspaces/{}", bare.workspace_id),
            bare.auth(),
            Some(json!({"coverageLat": 1.0, "coverageLng": 2.0, "coverageRadiusMeters": 10_001})),
        )
        .await
        .expect(400, "INVALID_INPUT");
    assert!(r.message().contains("without a deviceKind"), "{}", r.body);
}

/// A drone LIVE on a 60 s session, sending on time from outside the fence
/// for its first `outside` seconds; returns the session id and its start.
/// The session's proof bundle as its consumer fetches it, checked offline:
/// it verifies, and recomputes exactly the meter the server states.
async fn proven(t: &TestApp, consumer: &Actor, id: &str) -> lx_protocol::proof::ProofBundle {
    let r = t
        .get(format!("/sessions/{id}/proof"), consumer.auth())
        .await
        .ok();
    let bundle: lx_protocol::proof::ProofBundle =
        serde_json::from_value(r.data().clone()).expect("a proof bundle");
    let verdict = lx_protocol::proof::verify(&bundle);
    assert!(verdict.ok, "{:#?}", verdict.findings);
    let meter = &t.session(consumer, id).await["meter"];
    for (field, value) in [
        ("cleanSeconds", verdict.recomputed.clean_seconds),
        ("failedSeconds", verdict.recomputed.failed_seconds),
        ("chargedMicroUsdc", verdict.recomputed.charged_micro_usdc),
    ] {
        assert_eq!(meter[field].as_u64(), Some(value), "{field}: {meter}");
    }
    bundle
}

async fn live_drone_session(t: &TestApp, consumer: &Actor, drone: &Device) -> (String, Uuid, i64) {
    t.live_device_session(consumer, drone).await
}

#[tokio::test]
async fn samples_backdated_after_the_end_are_refused_and_change_nothing() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("fence-consumer").await;
    let (_, drone) = fleet(&t, "fence-co", BOGOTA).await;
    let (id, sid, started) = live_drone_session(&t, &consumer, &drone).await;
    let path = format!("/sessions/{id}/telemetry");
    // The whole minute from 400 m away, sent on time.
    for i in 0..60 {
        let at = started + i * 1000 + 100;
        t.clock.set_ms(at);
        let s = drone.sample(Some(sid), at, north(400.0), 4.0);
        t.post(&path, drone.auth(), s).await.ok();
    }
    t.clock.set_ms(started + 60_000);
    let ended = t
        .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    let before = ended.data()["meter"]["cleanSeconds"].as_u64().unwrap();
    assert_eq!(before, 0);
    assert_eq!(reasons(ended.data()), vec!["OUTSIDE_GEOFENCE"]);

    // The attack: within the settle delay, the same seconds again from inside
    // the fence, freshly signed with higher sequences.
    t.clock.set_ms(started + 65_000);
    let forged: Vec<Value> = (0..60)
        .map(|i| drone.sample(Some(sid), started + i * 1000 + 600, BOGOTA, 4.0))
        .collect();
    let r = t
        .post(&path, drone.auth(), json!(forged))
        .await
        .expect(400, "STALE_TIMESTAMP");
    assert_eq!(r.detail(), "telemetry:capturedAtNotIncreasing");
    assert!(r.message().starts_with("[0].capturedAt"), "{}", r.message());
    let one = drone.sample(Some(sid), started + 30_600, BOGOTA, 4.0);
    let r = t
        .post(&path, drone.auth(), one)
        .await
        .expect(400, "STALE_TIMESTAMP");
    assert!(r.message().starts_with("capturedAt"), "{}", r.message());

    t.clock.set_ms(started + 60_000 + 15_000);
    t.app.sweep(t.clock_now()).await;
    let final_ = t.session(&consumer, &id).await;
    assert_eq!(final_["meterFinal"], true);
    assert_eq!(final_["meter"]["cleanSeconds"].as_u64(), Some(before));
}

#[tokio::test]
async fn samples_withheld_while_the_device_was_heard_from_do_not_count_late() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("withhold-consumer").await;
    let (_, drone) = fleet(&t, "withhold-co", BOGOTA).await;
    let (id, sid, started) = live_drone_session(&t, &consumer, &drone).await;
    let path = format!("/sessions/{id}/telemetry");
    // Outside for 30 s, on time; then only bare heartbeats every 5 s: the
    // device is reachable, but says nothing of where it is.
    for i in 0..30 {
        let at = started + i * 1000 + 100;
        t.clock.set_ms(at);
        let s = drone.sample(Some(sid), at, north(400.0), 4.0);
        t.post(&path, drone.auth(), s).await.ok();
    }
    for i in 0..7 {
        t.clock.set_ms(started + 30_000 + i * 5_000);
        t.post("/operators/heartbeat", drone.auth(), json!({}))
            .await
            .ok();
    }
    t.clock.set_ms(started + 60_000);
    let ended = t
        .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    let before = ended.data()["meter"]["cleanSeconds"].as_u64().unwrap();
    assert_eq!(before, 0);

    // Near the end of the settle delay: in-fence samples "buffered" for
    // 30..60, capture times growing with the sequence. Accepted, but all
    // late, and captured where the device was heard from: no outage.
    t.clock.set_ms(started + 74_000);
    let late: Vec<Value> = (30..60)
        .map(|i| drone.sample(Some(sid), started + i * 1000 + 100, BOGOTA, 4.0))
        .collect();
    t.post(&path, drone.auth(), json!(late)).await.ok();
    // And capture times that go backwards within a batch are refused.
    let a = drone.sample(Some(sid), started + 64_000, BOGOTA, 4.0);
    let b = drone.sample(Some(sid), started + 63_000, BOGOTA, 4.0);
    let r = t
        .post(&path, drone.auth(), json!([a, b]))
        .await
        .expect(400, "STALE_TIMESTAMP");
    assert!(r.message().starts_with("[1].capturedAt"), "{}", r.message());

    t.clock.set_ms(started + 60_000 + 15_000);
    t.app.sweep(t.clock_now()).await;
    let final_ = t.session(&consumer, &id).await;
    assert_eq!(final_["meterFinal"], true);
    assert_eq!(
        final_["meter"]["cleanSeconds"].as_u64(),
        Some(before),
        "{}",
        final_["meter"]
    );
    // The withheld samples are in the proof, and anyone recomputing the
    // meter from it finds that they do not count either.
    let bundle = proven(&t, &consumer, &id).await;
    assert_eq!(bundle.track.len(), 60);
    let late = bundle
        .track
        .iter()
        .filter(|s| s.received_at_ms - s.signed.captured_at_ms as i64 > 10_000)
        .count();
    assert_eq!(late, 30, "the withheld half arrived late");
}

#[tokio::test]
async fn samples_buffered_through_a_recorded_outage_still_count() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("outage-consumer").await;
    let (_, drone) = fleet(&t, "outage-co", BOGOTA).await;
    let (id, sid, started) = live_drone_session(&t, &consumer, &drone).await;
    let path = format!("/sessions/{id}/telemetry");
    for i in 0..30 {
        let at = started + i * 1000 + 100;
        t.clock.set_ms(at);
        t.post(
            &path,
            drone.auth(),
            drone.sample(Some(sid), at, BOGOTA, 4.0),
        )
        .await
        .ok();
    }
    // The broker announces the device gone; it signs on, out of reach.
    t.clock.set_ms(started + 45_000);
    assert!(
        t.app
            .store
            .mark_operator_disconnected(drone.operator_id, t.clock_now())
            .await
            .unwrap()
    );
    t.clock.set_ms(started + 60_000);
    let ended = t
        .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    // 30 s, plus 30..32 on the fix of 29.1 s.
    assert_eq!(ended.data()["meter"]["cleanSeconds"], 32);
    t.clock.set_ms(started + 70_000);
    let backlog: Vec<Value> = (30..60)
        .map(|i| drone.sample(Some(sid), started + i * 1000 + 100, BOGOTA, 4.0))
        .collect();
    t.post(&path, drone.auth(), json!(backlog)).await.ok();
    t.clock.set_ms(started + 75_000);
    t.app.sweep(t.clock_now()).await;
    let final_ = t.session(&consumer, &id).await;
    assert_eq!(final_["meter"]["cleanSeconds"], 60, "{}", final_["meter"]);
    // The outage is in the proof: the late backlog counts for anyone.
    let bundle = proven(&t, &consumer, &id).await;
    assert_eq!(
        bundle.device_outages.len(),
        1,
        "{:?}",
        bundle.device_outages
    );
    assert_eq!(bundle.track.len(), 60);
}

#[tokio::test]
async fn a_proof_is_the_parties_own_and_only_once_the_session_has_ended() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("proof-consumer").await;
    let stranger = t.consumer("proof-stranger").await;
    let (supplier, drone) = fleet(&t, "proof-co", BOGOTA).await;
    let (id, sid, started) = live_drone_session(&t, &consumer, &drone).await;
    let proof = format!("/sessions/{id}/proof");
    let r = t
        .get(&proof, consumer.auth())
        .await
        .expect(409, "INVALID_STATE");
    assert_eq!(r.detail(), "session:proof:LIVE");
    for i in 0..10 {
        let at = started + i * 1000 + 100;
        t.clock.set_ms(at);
        let s = drone.sample(Some(sid), at, north(400.0 * (i % 2) as f64), 4.0);
        t.post(format!("/sessions/{id}/telemetry"), drone.auth(), s)
            .await
            .ok();
    }
    t.clock.set_ms(started + 10_000);
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    t.get(&proof, stranger.auth())
        .await
        .expect(404, "SESSION_NOT_FOUND");
    // Before the settle delay the meter is stated as not final.
    let early = proven(&t, &consumer, &id).await;
    assert!(!early.meter_final);
    t.clock.set_ms(started + 30_000);
    t.app.sweep(t.clock_now()).await;
    let bundle = proven(&t, &consumer, &id).await;
    assert!(bundle.meter_final);
    assert_eq!(
        bundle.evidence,
        lx_protocol::proof::EvidenceKind::SignedTelemetry
    );
    let address = lx_protocol::wallet::Address::from_signing_key(&drone.key).to_checksum();
    assert_eq!(bundle.signer.as_deref(), Some(address.as_str()));
    // Every other second was 400 m out: the derived windows say so, and
    // the operator's side gets the same bundle.
    assert_eq!(bundle.derived_windows.len(), 5);
    let theirs = t.get(&proof, supplier.auth()).await.ok();
    assert_eq!(
        theirs.data()["track"],
        serde_json::to_value(&bundle.track).unwrap()
    );
}

#[tokio::test]
async fn a_radius_stored_before_the_cap_reaches_only_as_far_as_the_cap() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("far-consumer").await;
    let wide = t.supplier("legacy-co", BOGOTA, true).await;
    // Written before the cap existed: 1,000 km around Bogotá.
    let stored = t
        .app
        .store
        .patch_workspace(
            wide.workspace_id,
            lx_server::store::WorkspacePatch {
                coverage: Some(lx_server::store::CoverageArea {
                    lat: BOGOTA.0,
                    lng: BOGOTA.1,
                    radius_m: 1_000_000,
                }),
                ..Default::default()
            },
            t.clock_now(),
        )
        .await
        .unwrap();
    t.app.dispatcher.sync(&stored);
    let coverage = t.get("/coverage", crate::common::Auth::None).await.ok();
    assert_eq!(coverage.data()["circles"][0]["radiusMeters"], 10_000);
    let far = t.request(&consumer, north(100_000.0), 60).await;
    dispatch(&t, &consumer, &far)
        .await
        .expect(503, "NO_COVERAGE");
    let near = t.request(&consumer, north(9_000.0), 60).await;
    let s = dispatch(&t, &consumer, &near).await.ok();
    assert_eq!(
        s.data()["operatorWorkspaceId"],
        wide.workspace_id.to_string()
    );
}

#[tokio::test]
async fn a_live_session_shows_its_running_meter_and_ending_charges_exactly_that() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("running-consumer").await;
    let (_, drone) = fleet(&t, "running-co", BOGOTA).await;
    let (id, sid, started) = live_drone_session(&t, &consumer, &drone).await;
    let path = format!("/sessions/{id}/telemetry");
    // Ten seconds inside the fence, then five 400 m out.
    for i in 0..15 {
        let at = started + i * 1000 + 100;
        t.clock.set_ms(at);
        let here = if i < 10 { BOGOTA } else { north(400.0) };
        t.post(&path, drone.auth(), drone.sample(Some(sid), at, here, 4.0))
            .await
            .ok();
    }
    t.clock.set_ms(started + 15_000);
    let running = t.session(&consumer, &id).await;
    assert_eq!(running["state"], "LIVE");
    assert_eq!(running["meterFinal"], false);
    assert_eq!(running["meter"]["cleanSeconds"], 10, "{running}");
    assert_eq!(running["meter"]["failedSeconds"], 5, "{running}");
    assert_eq!(running["cleanSeconds"], 10, "top level as well");
    // The list is not metered on the fly (a page of them would cost that
    // many meters); the session is.
    let listed = t.get("/sessions", consumer.auth()).await.ok();
    assert!(listed.data()[0]["meter"].is_null(), "{}", listed.data());
    let ended = t
        .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    assert_eq!(ended.data()["meter"], running["meter"]);
}
