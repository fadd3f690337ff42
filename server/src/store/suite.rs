//! The store test-suite: every backend must pass it. A backend's tests
//! invoke `store_suite!(make a fresh store)`.

// A failed step is a failed test: unwrap is the point here.
#![allow(clippy::unwrap_used)]

use lx_protocol::api::{
    Availability, DeliveryState, KeyEnvironment, Role, Scope, SessionState, WebhookEventType,
};
use lx_protocol::geo::Point;
use lx_protocol::wallet::Address;
use uuid::Uuid;

use super::*;

pub fn build_workspace(slug: &str, roles: &[Role], online_at: Option<Point>) -> Workspace {
    Workspace {
        id: Uuid::new_v4(),
        slug: slug.to_owned(),
        name: slug.to_owned(),
        wallet: Address([slug.len() as u8; 20]),
        roles: roles.to_vec(),
        availability: if online_at.is_some() {
            Availability::Online
        } else {
            Availability::Offline
        },
        coverage: online_at.map(|p| CoverageArea {
            lat: p.lat,
            lng: p.lng,
            radius_m: 1000,
        }),
        device_kind: None,
        auto_accept: true,
        offer_timeout_seconds: 15,
        idle_since_ms: 1_000,
        created_ms: 1_000,
        trust_tier: 0,
        cooling_down_until_ms: None,
    }
}

pub fn build_session(consumer: &Workspace, rate: u64, max_duration: u32) -> NewSession {
    NewSession {
        id: Uuid::new_v4(),
        point: Point::new(1.0, 2.0),
        geofence_radius_m: 150,
        max_duration_seconds: max_duration,
        wait_timeout_seconds: 60,
        rate_micro_usdc: rate,
        consumer_workspace_id: consumer.id,
        consumer_wallet: consumer.wallet,
        quote_id: None,
        created_ms: 10_000,
        min_trust_tier: 0,
    }
}

pub async fn workspaces_are_unique_by_slug_and_patched_atomically(store: &dyn Store) {
    let ws = store
        .insert_workspace(build_workspace("alpha", &[Role::Supplier], None))
        .await
        .unwrap();
    assert_eq!(store.workspace(ws.id).await.unwrap().as_ref(), Some(&ws));
    let dup = build_workspace("alpha", &[Role::Consumer], None);
    assert!(matches!(
        store.insert_workspace(dup).await,
        Err(StoreError::Conflict(_))
    ));
    let online = WorkspacePatch {
        availability: Some(Availability::Online),
        ..Default::default()
    };
    assert_eq!(
        store.patch_workspace(ws.id, online.clone(), 5).await,
        Err(PatchError::MissingCoverage)
    );
    let patch = WorkspacePatch {
        coverage: Some(CoverageArea {
            lat: 1.0,
            lng: 2.0,
            radius_m: 500,
        }),
        ..online
    };
    let patched = store.patch_workspace(ws.id, patch, 5_000).await.unwrap();
    assert_eq!(patched.availability, Availability::Online);
    assert_eq!(
        patched.idle_since_ms, 5_000,
        "coming ONLINE starts the idle clock"
    );
    assert_eq!(store.online_suppliers().await.unwrap().len(), 1);
    assert_eq!(
        store.workspaces_of_wallet(ws.wallet).await.unwrap().len(),
        1
    );
}

pub async fn a_challenge_is_taken_once(store: &dyn Store) {
    let ch = Challenge {
        nonce: "abcdefgh12".into(),
        wallet: Address([1; 20]),
        purpose: ChallengePurpose::SignIn,
        message: "m".into(),
        expires_ms: 99,
    };
    store.insert_challenge(ch.clone()).await.unwrap();
    assert_eq!(
        store
            .take_challenge("abcdefgh12", ChallengePurpose::CreateWorkspace)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_challenge("abcdefgh12", ChallengePurpose::SignIn)
            .await
            .unwrap(),
        Some(ch)
    );
    assert_eq!(
        store
            .take_challenge("abcdefgh12", ChallengePurpose::SignIn)
            .await
            .unwrap(),
        None
    );
}

pub async fn revoking_a_key_keeps_the_first_revocation_time(store: &dyn Store) {
    let ws = store
        .insert_workspace(build_workspace("keys", &[Role::Consumer], None))
        .await
        .unwrap();
    let key = ApiKey {
        id: Uuid::new_v4(),
        workspace_id: ws.id,
        hash: [3; 32],
        prefix: "lxxn_test_".into(),
        label: "k".into(),
        environment: KeyEnvironment::Test,
        scopes: vec![Scope::SessionsRead, Scope::WalletRead],
        created_ms: 1,
        revoked_ms: None,
    };
    store.insert_api_key(key.clone()).await.unwrap();
    assert_eq!(
        store.api_key_by_hash([3; 32]).await.unwrap(),
        Some(key.clone())
    );
    let first = store
        .revoke_api_key(ws.id, key.id, 100)
        .await
        .unwrap()
        .unwrap();
    let second = store
        .revoke_api_key(ws.id, key.id, 200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.revoked_ms, second.revoked_ms),
        (Some(100), Some(100))
    );
    assert_eq!(
        store
            .revoke_api_key(Uuid::new_v4(), key.id, 300)
            .await
            .unwrap(),
        None
    );
}

pub async fn credit_counts_every_open_session_of_the_wallet(store: &dyn Store) {
    let ws = store
        .insert_workspace(build_workspace("buyer", &[Role::Consumer], None))
        .await
        .unwrap();
    let a = store
        .create_session(build_session(&ws, 10, 100), 2_000, 1)
        .await
        .unwrap();
    store
        .create_session(build_session(&ws, 10, 100), 2_000, 1)
        .await
        .unwrap();
    let refused = store
        .create_session(build_session(&ws, 10, 100), 2_999, 1)
        .await;
    assert_eq!(
        refused,
        Err(CreateSessionError::InsufficientCredit {
            required: 3_000,
            available: 2_999
        })
    );
    let cancel = Transition {
        session_id: a.id,
        expected: Some(SessionState::Requested),
        to: Some(SessionState::Cancelled),
        ended_ms: Some(2),
        ..Transition::default()
    };
    store.apply(cancel).await.unwrap();
    store
        .create_session(build_session(&ws, 10, 100), 2_000, 1)
        .await
        .unwrap();
}

pub async fn a_quote_is_consumed_only_by_a_session_that_is_created(store: &dyn Store) {
    let ws = store
        .insert_workspace(build_workspace("quoter", &[Role::Consumer], None))
        .await
        .unwrap();
    let quote = Quote {
        id: Uuid::new_v4(),
        workspace_id: ws.id,
        point: Point::new(1.0, 2.0),
        duration_seconds: 60,
        rate_micro_usdc: 10,
        supply_bps: 10_000,
        demand_bps: 10_000,
        corridor_bps: 10_000,
        created_ms: 1,
        expires_ms: 30_001,
        used_ms: None,
    };
    store.insert_quote(quote.clone()).await.unwrap();
    let new = NewSession {
        quote_id: Some(quote.id),
        ..build_session(&ws, 10, 100)
    };
    assert!(matches!(
        store.create_session(new.clone(), 0, 1).await,
        Err(CreateSessionError::InsufficientCredit { .. })
    ));
    assert_eq!(store.quote(quote.id).await.unwrap().unwrap().used_ms, None);
    store.create_session(new.clone(), 1_000, 1).await.unwrap();
    let again = NewSession {
        id: Uuid::new_v4(),
        ..new
    };
    assert_eq!(
        store.create_session(again, 1_000_000, 1).await,
        Err(CreateSessionError::QuoteUsed)
    );
}

pub async fn a_transition_is_a_compare_and_swap_with_the_supplier(store: &dyn Store) {
    let consumer = store
        .insert_workspace(build_workspace("cons", &[Role::Consumer], None))
        .await
        .unwrap();
    let supplier = store
        .insert_workspace(build_workspace(
            "supp",
            &[Role::Supplier],
            Some(Point::new(1.0, 2.0)),
        ))
        .await
        .unwrap();
    let s1 = store
        .create_session(build_session(&consumer, 10, 100), u64::MAX, 1)
        .await
        .unwrap();
    let s2 = store
        .create_session(build_session(&consumer, 10, 100), u64::MAX, 1)
        .await
        .unwrap();
    let assign = |id| Transition {
        session_id: id,
        expected: Some(SessionState::Requested),
        to: Some(SessionState::Assigned),
        operator_workspace_id: Some(supplier.id),
        assigned_ms: Some(20),
        claim: Some(supplier.id),
        ..Transition::default()
    };
    let assigned = store.apply(assign(s1.id)).await.unwrap();
    assert_eq!(
        (assigned.state, assigned.operator_workspace_id),
        (SessionState::Assigned, Some(supplier.id))
    );
    assert_eq!(
        store.apply(assign(s1.id)).await,
        Err(ApplyError::State(SessionState::Assigned))
    );
    // The supplier is BUSY: the second session's claim fails and writes nothing.
    assert_eq!(
        store.apply(assign(s2.id)).await,
        Err(ApplyError::SupplierUnavailable)
    );
    let s2_after = store.session(s2.id).await.unwrap().unwrap();
    assert_eq!(
        (s2_after.state, s2_after.operator_workspace_id),
        (SessionState::Requested, None)
    );
    assert_eq!(
        store
            .workspace(supplier.id)
            .await
            .unwrap()
            .unwrap()
            .availability,
        Availability::Busy
    );
    let busy_patch = WorkspacePatch {
        availability: Some(Availability::Offline),
        ..Default::default()
    };
    assert_eq!(
        store.patch_workspace(supplier.id, busy_patch, 30).await,
        Err(PatchError::Busy)
    );

    let release = Transition {
        session_id: s1.id,
        expected: Some(SessionState::Assigned),
        to: Some(SessionState::Cancelled),
        ended_ms: Some(40),
        release: Some((supplier.id, 40)),
        ..Transition::default()
    };
    store.apply(release).await.unwrap();
    let freed = store.workspace(supplier.id).await.unwrap().unwrap();
    assert_eq!(
        (freed.availability, freed.idle_since_ms),
        (Availability::Online, 40)
    );
    assert_eq!(
        store
            .apply(Transition {
                session_id: Uuid::new_v4(),
                ..Transition::default()
            })
            .await,
        Err(ApplyError::SessionNotFound)
    );
}

pub async fn media_is_attached_once_and_windows_open_and_close(store: &dyn Store) {
    let consumer = store
        .insert_workspace(build_workspace("media", &[Role::Consumer], None))
        .await
        .unwrap();
    let s = store
        .create_session(build_session(&consumer, 10, 100), u64::MAX, 1)
        .await
        .unwrap();
    let media = |n: &str| MediaEndpoints {
        backend_ref: n.into(),
        whip_url: format!("w/{n}"),
        whep_url: format!("v/{n}"),
    };
    assert_eq!(
        store.attach_media(s.id, media("a")).await,
        Err(ApplyError::State(SessionState::Requested))
    );
    let to = |from, to| Transition {
        session_id: s.id,
        expected: Some(from),
        to: Some(to),
        ..Transition::default()
    };
    store
        .apply(to(SessionState::Requested, SessionState::Assigned))
        .await
        .unwrap();
    assert_eq!(
        store.attach_media(s.id, media("a")).await.unwrap().media,
        Some(media("a"))
    );
    assert_eq!(
        store.attach_media(s.id, media("b")).await.unwrap().media,
        Some(media("a"))
    );
    // Moved once from the replica gone with "a": the second move, which
    // still names "a", finds "b" in its place.
    assert_eq!(
        store
            .replace_media(s.id, "a", media("b"))
            .await
            .unwrap()
            .media,
        Some(media("b"))
    );
    assert_eq!(
        store
            .replace_media(s.id, "a", media("c"))
            .await
            .unwrap()
            .media,
        Some(media("b"))
    );
    store
        .apply(Transition {
            started_ms: Some(100),
            ..to(SessionState::Assigned, SessionState::Live)
        })
        .await
        .unwrap();
    let paused = Transition {
        open_window: Some((lx_protocol::api::WindowReason::Paused, 200)),
        ..to(SessionState::Live, SessionState::Paused)
    };
    store.apply(paused).await.unwrap();
    let resumed = Transition {
        close_windows: vec![(lx_protocol::api::WindowReason::Paused, 300)],
        ..to(SessionState::Paused, SessionState::Live)
    };
    let s = store.apply(resumed).await.unwrap();
    assert_eq!(
        s.windows,
        vec![Window {
            reason: lx_protocol::api::WindowReason::Paused,
            opened_ms: 200,
            closed_ms: Some(300)
        }]
    );
    // Two media gaps; at the cap the second is reopened, not duplicated.
    let gap = |opened| Transition {
        open_window: Some((lx_protocol::api::WindowReason::NetworkError, opened)),
        ..to(SessionState::Live, SessionState::Live)
    };
    let close = |at| Transition {
        close_windows: vec![(lx_protocol::api::WindowReason::NetworkError, at)],
        ..to(SessionState::Live, SessionState::Live)
    };
    store.apply(gap(310)).await.unwrap();
    store.apply(close(320)).await.unwrap();
    store.apply(gap(330)).await.unwrap();
    store.apply(close(340)).await.unwrap();
    let s = store
        .apply(Transition {
            reopen_window: Some(lx_protocol::api::WindowReason::NetworkError),
            ..to(SessionState::Live, SessionState::Live)
        })
        .await
        .unwrap();
    let gaps: Vec<_> = s
        .windows
        .iter()
        .filter(|w| w.reason == lx_protocol::api::WindowReason::NetworkError)
        .map(|w| (w.opened_ms, w.closed_ms))
        .collect();
    assert_eq!(
        gaps,
        vec![(310, Some(320)), (330, None)],
        "the latest reopened"
    );
    let s = store.apply(close(390)).await.unwrap();
    assert_eq!(s.windows.len(), 3);
    // It carries media until it ends.
    let carrying: Vec<Uuid> = store
        .media_sessions()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(carrying, vec![s.id]);
    store
        .apply(Transition {
            ended_ms: Some(400),
            ..to(SessionState::Live, SessionState::Ended)
        })
        .await
        .unwrap();
    assert!(store.media_sessions().await.unwrap().is_empty());
}

pub async fn due_sessions_are_the_ones_past_a_deadline(store: &dyn Store) {
    let consumer = store
        .insert_workspace(build_workspace("due", &[Role::Consumer], None))
        .await
        .unwrap();
    let s = store
        .create_session(build_session(&consumer, 10, 100), u64::MAX, 1)
        .await
        .unwrap();
    assert!(
        store
            .due_sessions(s.wait_deadline_ms() - 1, 15_000, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .due_sessions(s.wait_deadline_ms(), 15_000, 0, 10)
            .await
            .unwrap()[0]
            .id,
        s.id
    );
    let offer = Transition {
        session_id: s.id,
        expected: Some(SessionState::Requested),
        set_offer: Some(Offer {
            workspace_id: consumer.id,
            expires_ms: 10_500,
        }),
        record_attempt: Some(consumer.id),
        ..Transition::default()
    };
    store.apply(offer).await.unwrap();
    assert_eq!(
        store.offers_for(consumer.id, 10_499).await.unwrap().len(),
        1
    );
    assert!(
        store
            .offers_for(consumer.id, 10_500)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .due_sessions(10_500, 15_000, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.attempted_workspaces(s.id).await.unwrap(),
        vec![consumer.id]
    );
}

pub async fn final_charged_sessions_are_queued_once_in_sequence(store: &dyn Store) {
    let consumer = store
        .insert_workspace(build_workspace("payer", &[Role::Consumer], None))
        .await
        .unwrap();
    let supplier = store
        .insert_workspace(build_workspace(
            "payee-co",
            &[Role::Supplier],
            Some(Point::new(1.0, 2.0)),
        ))
        .await
        .unwrap();
    // Three sessions: two charged (ending at 500 and 400), one free.
    let mut ids = Vec::new();
    for (ended, charged) in [(500, 9_000u64), (400, 4_000), (450, 0)] {
        let s = store
            .create_session(build_session(&consumer, 10, 100), u64::MAX, 1)
            .await
            .unwrap();
        let step = |from, to| Transition {
            session_id: s.id,
            expected: Some(from),
            to: Some(to),
            ..Transition::default()
        };
        store
            .apply(Transition {
                operator_workspace_id: Some(supplier.id),
                assigned_ms: Some(20),
                ..step(SessionState::Requested, SessionState::Assigned)
            })
            .await
            .unwrap();
        store
            .apply(Transition {
                started_ms: Some(100),
                ..step(SessionState::Assigned, SessionState::Live)
            })
            .await
            .unwrap();
        let meter = Meter {
            clean_seconds: charged / 10,
            failed_seconds: 0,
            charged_micro_usdc: charged,
            fee_micro_usdc: charged / 10,
            operator_earned_micro_usdc: charged - charged / 10,
            fee_bps: 1000,
        };
        store
            .apply(Transition {
                ended_ms: Some(ended),
                meter: Some(meter),
                ..step(SessionState::Live, SessionState::Ended)
            })
            .await
            .unwrap();
        ids.push(s.id);
    }
    assert_eq!(
        store.queue_settlements(600, &[]).await.unwrap(),
        0,
        "nothing final yet"
    );
    for id in &ids {
        store
            .apply(Transition {
                session_id: *id,
                expected: Some(SessionState::Ended),
                meter_final: true,
                ..Transition::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(store.queue_settlements(700, &[]).await.unwrap(), 2);
    assert_eq!(
        store.queue_settlements(800, &[]).await.unwrap(),
        0,
        "queued once"
    );
    let first = store.settlement(ids[1]).await.unwrap().unwrap();
    let second = store.settlement(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (first.sequence, second.sequence),
        (1, 2),
        "in the order they ended"
    );
    assert_eq!(
        store.settlement(ids[2]).await.unwrap(),
        None,
        "nothing to settle"
    );
    assert_eq!(
        (
            second.to_amount,
            second.fee_amount,
            second.seconds,
            second.rate_micro_usdc
        ),
        (8_100, 900, 900, 10)
    );
    assert_eq!(
        (second.consumer, second.operator),
        (consumer.wallet, supplier.wallet)
    );
    assert_eq!(second.state, SettlementState::Pending);
    store
        .save_settlements(vec![SettlementRecord {
            state: SettlementState::Confirmed,
            tx_hash: Some("0xabc".into()),
            block: Some(7),
            updated_ms: 900,
            ..first.clone()
        }])
        .await
        .unwrap();
    let open: Vec<Uuid> = store
        .open_settlements(10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.session_id)
        .collect();
    assert_eq!(open, vec![ids[0]]);
    let confirmed = store.settlement(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (confirmed.state, confirmed.block),
        (SettlementState::Confirmed, Some(7))
    );
    // Credit: the 9,000 of the session not settled yet is still promised;
    // the confirmed 4,000 has left the pool on chain and counts no more.
    let hold = 10 * 100;
    let refused = store
        .create_session(build_session(&consumer, 10, 100), 9_000 + hold - 1, 1)
        .await;
    assert_eq!(
        refused.err(),
        Some(CreateSessionError::InsufficientCredit {
            required: 9_000 + hold,
            available: 9_000 + hold - 1
        })
    );
    let open_one = store
        .create_session(build_session(&consumer, 10, 100), 9_000 + hold, 1)
        .await
        .unwrap();
    let owed = store.obligations(consumer.wallet).await.unwrap();
    assert_eq!((owed.held, owed.unsettled), (hold, 9_000));
    assert!(owed.debts.is_empty());

    // A debt: the unsettled 9,000 the pool no longer covered. It still counts
    // against the pool, and no new session is taken until it is paid.
    let unpaid = SettlementRecord {
        state: SettlementState::Unpaid,
        attempts: 1,
        last_error: Some("InsufficientDeposit".into()),
        next_attempt_ms: 2_000,
        updated_ms: 1_000,
        ..second.clone()
    };
    store.save_settlements(vec![unpaid.clone()]).await.unwrap();
    let owed = store.obligations(consumer.wallet).await.unwrap();
    assert_eq!(owed.unsettled, 9_000, "a debt is still owed");
    assert_eq!(
        owed.debts,
        vec![crate::credit::Debt {
            session_id: ids[0],
            amount_micro_usdc: 9_000,
            last_error: Some("InsufficientDeposit".into()),
        }]
    );
    let open: Vec<SettlementState> = store
        .open_settlements(10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(open, vec![SettlementState::Unpaid], "a debt stays open");
    match store
        .create_session(build_session(&consumer, 10, 100), u64::MAX, 1)
        .await
    {
        Err(CreateSessionError::Unpaid(debt)) => assert_eq!(debt.session_id, ids[0]),
        other => panic!("a debtor got {other:?}"),
    }
    store
        .save_settlements(vec![SettlementRecord {
            state: SettlementState::Confirmed,
            ..unpaid
        }])
        .await
        .unwrap();
    assert!(
        store
            .obligations(consumer.wallet)
            .await
            .unwrap()
            .debts
            .is_empty()
    );
    store
        .create_session(build_session(&consumer, 10, 100), u64::MAX, 1)
        .await
        .expect("paid: sessions are taken again");
    assert_eq!(
        store.live_sessions(10).await.unwrap().len(),
        0,
        "{} is REQUESTED, not LIVE",
        open_one.id
    );
}

fn build_webhook(ws: &Workspace, events: &[WebhookEventType]) -> Webhook {
    Webhook {
        id: Uuid::new_v4(),
        workspace_id: ws.id,
        url: "http://127.0.0.1:9/hook".into(),
        events: events.to_vec(),
        secret: "whsec_test".into(),
        created_ms: 5,
        failed_in_a_row: 0,
        disabled_ms: None,
    }
}

async fn pending_types(store: &dyn Store, webhook: Uuid) -> Vec<WebhookEventType> {
    let mut log = store.webhook_deliveries(webhook, 100).await.unwrap();
    log.reverse();
    log.iter()
        .filter(|d| d.state == DeliveryState::Pending)
        .map(|d| d.event_type)
        .collect()
}

pub async fn webhook_events_are_queued_once_with_their_change_and_due_in_order(store: &dyn Store) {
    use WebhookEventType::*;
    let consumer = store
        .insert_workspace(build_workspace("hooked-consumer", &[Role::Consumer], None))
        .await
        .unwrap();
    let supplier = store
        .insert_workspace(build_workspace(
            "hooked-supplier",
            &[Role::Supplier],
            Some(Point::new(1.0, 2.0)),
        ))
        .await
        .unwrap();
    let stranger = store
        .insert_workspace(build_workspace("stranger", &[Role::Consumer], None))
        .await
        .unwrap();
    let everything = build_webhook(&consumer, &WebhookEventType::ALL);
    let live_only = build_webhook(&supplier, &[SessionLive]);
    let elsewhere = build_webhook(&stranger, &WebhookEventType::ALL);
    for w in [&everything, &live_only, &elsewhere] {
        store.insert_webhook(w.clone()).await.unwrap();
    }
    assert_eq!(
        store.webhooks_of(consumer.id).await.unwrap(),
        vec![everything.clone()]
    );
    assert_eq!(
        store.webhook(stranger.id, everything.id).await.unwrap(),
        None
    );

    let s = store
        .create_session(build_session(&consumer, 10, 100), u64::MAX, 1)
        .await
        .unwrap();
    let step = |from, to| Transition {
        session_id: s.id,
        expected: Some(from),
        to: Some(to),
        ..Transition::default()
    };
    store
        .apply(Transition {
            operator_workspace_id: Some(supplier.id),
            assigned_ms: Some(20),
            ..step(SessionState::Requested, SessionState::Assigned)
        })
        .await
        .unwrap();
    // A compare-and-swap that loses changes nothing and queues nothing.
    assert!(
        store
            .apply(step(SessionState::Requested, SessionState::Assigned))
            .await
            .is_err()
    );
    store
        .apply(Transition {
            started_ms: Some(100),
            ..step(SessionState::Assigned, SessionState::Live)
        })
        .await
        .unwrap();
    store
        .apply(step(SessionState::Live, SessionState::Paused))
        .await
        .unwrap();
    store
        .apply(step(SessionState::Paused, SessionState::Live))
        .await
        .unwrap();
    assert_eq!(
        pending_types(store, everything.id).await,
        vec![SessionAssigned, SessionLive]
    );
    assert_eq!(pending_types(store, live_only.id).await, vec![SessionLive]);
    assert!(pending_types(store, elsewhere.id).await.is_empty());

    // Only each webhook's oldest PENDING delivery is due.
    let due = store.due_deliveries(1_000, 10).await.unwrap();
    let mut heads: Vec<(Uuid, WebhookEventType)> = due
        .iter()
        .map(|d| (d.delivery.webhook_id, d.delivery.event_type))
        .collect();
    heads.sort();
    let mut expected = vec![
        (everything.id, SessionAssigned),
        (live_only.id, SessionLive),
    ];
    expected.sort();
    assert_eq!(heads, expected);
    let head = due
        .iter()
        .find(|d| d.delivery.webhook_id == everything.id)
        .unwrap()
        .clone();
    assert_eq!((head.delivery.event_ms, head.delivery.attempts), (20, 0));
    assert_eq!(
        (head.url.as_str(), head.secret.as_str()),
        ("http://127.0.0.1:9/hook", "whsec_test")
    );
    let data: serde_json::Value = serde_json::from_str(&head.payload).unwrap();
    assert_eq!(data["state"], "ASSIGNED", "the session as it was then");
    let same_event = due
        .iter()
        .find(|d| d.delivery.webhook_id == live_only.id)
        .unwrap();
    let live_of_consumer = store.webhook_deliveries(everything.id, 1).await.unwrap()[0].clone();
    assert_eq!(
        live_of_consumer.event_id, same_event.delivery.event_id,
        "one event, one id"
    );

    // A retry later keeps the head in place; delivering it moves the queue on.
    let retry = Delivery {
        attempts: 1,
        last_error: Some("refused".into()),
        next_attempt_ms: 5_000,
        updated_ms: 1_000,
        ..head.delivery.clone()
    };
    assert!(store.save_delivery(retry.clone(), 10).await.unwrap());
    assert!(
        store
            .due_deliveries(4_999, 10)
            .await
            .unwrap()
            .iter()
            .all(|d| d.delivery.webhook_id != everything.id),
        "neither the head nor the event after it is due before the retry"
    );
    let delivered = Delivery {
        state: DeliveryState::Delivered,
        attempts: 2,
        last_status: Some(200),
        last_error: None,
        delivered_ms: Some(5_000),
        updated_ms: 5_000,
        ..retry
    };
    assert!(store.save_delivery(delivered.clone(), 10).await.unwrap());
    assert!(
        !store.save_delivery(delivered, 10).await.unwrap(),
        "a delivered row is final"
    );
    let next = store.due_deliveries(5_000, 10).await.unwrap();
    assert!(next.iter().any(|d| d.delivery.webhook_id == everything.id && d.delivery.event_type == SessionLive));

    // The end is an event; finalizing the meter afterwards is not.
    let meter = Meter {
        clean_seconds: 100,
        failed_seconds: 0,
        charged_micro_usdc: 1_000,
        fee_micro_usdc: 100,
        operator_earned_micro_usdc: 900,
        fee_bps: 1000,
    };
    store
        .apply(Transition {
            ended_ms: Some(300),
            meter: Some(meter),
            ..step(SessionState::Live, SessionState::Ended)
        })
        .await
        .unwrap();
    store
        .apply(Transition {
            session_id: s.id,
            expected: Some(SessionState::Ended),
            meter_final: true,
            ..Transition::default()
        })
        .await
        .unwrap();
    assert_eq!(
        pending_types(store, everything.id).await,
        vec![SessionLive, SessionEnded]
    );

    // CONFIRMED is `settlement.confirmed`, once however often it is saved.
    assert_eq!(store.queue_settlements(400, &[]).await.unwrap(), 1);
    let queued = store.settlement(s.id).await.unwrap().unwrap();
    let confirmed = SettlementRecord {
        state: SettlementState::Confirmed,
        tx_hash: Some("0xfeed".into()),
        block: Some(3),
        updated_ms: 500,
        ..queued.clone()
    };
    store.save_settlements(vec![queued]).await.unwrap();
    store
        .save_settlements(vec![confirmed.clone()])
        .await
        .unwrap();
    store.save_settlements(vec![confirmed]).await.unwrap();
    assert_eq!(
        pending_types(store, everything.id).await,
        vec![SessionLive, SessionEnded, SettlementConfirmed]
    );
    let log = store.webhook_deliveries(everything.id, 1).await.unwrap();
    assert_eq!(log[0].event_ms, 500);
    assert!(
        pending_types(store, live_only.id).await == vec![SessionLive],
        "not subscribed"
    );

    // Only its own workspace deletes a webhook; its deliveries go with it.
    assert!(
        !store
            .delete_webhook(stranger.id, everything.id)
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_webhook(consumer.id, everything.id)
            .await
            .unwrap()
    );
    assert!(
        store
            .webhook_deliveries(everything.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .due_deliveries(i64::MAX, 10)
            .await
            .unwrap()
            .iter()
            .all(|d| d.delivery.webhook_id != everything.id)
    );
}

pub async fn an_assignment_taken_back_frees_the_supplier_and_cools_it_down(store: &dyn Store) {
    let consumer = store
        .insert_workspace(build_workspace("silent-c", &[Role::Consumer], None))
        .await
        .unwrap();
    let supplier = store
        .insert_workspace(build_workspace(
            "silent-s",
            &[Role::Supplier],
            Some(Point::new(1.0, 2.0)),
        ))
        .await
        .unwrap();
    let new = NewSession {
        min_trust_tier: 0,
        ..build_session(&consumer, 10, 100)
    };
    let s = store.create_session(new, u64::MAX, 1).await.unwrap();
    store
        .apply(Transition {
            session_id: s.id,
            expected: Some(SessionState::Requested),
            to: Some(SessionState::Assigned),
            operator_workspace_id: Some(supplier.id),
            assigned_ms: Some(20_000),
            claim: Some(supplier.id),
            record_attempt: Some(supplier.id),
            trust_tier: Some(0),
            ..Transition::default()
        })
        .await
        .unwrap();
    let media = MediaEndpoints {
        backend_ref: "ref".into(),
        whip_url: "whip".into(),
        whep_url: "whep".into(),
    };
    let assigned = store.attach_media(s.id, media).await.unwrap();
    assert_eq!(assigned.trust_tier, Some(0));
    // Due 30 s after the assignment, not before; never with the timeout off.
    let due = |now, timeout| async move {
        store
            .due_sessions(now, 15_000, timeout, 10)
            .await
            .unwrap()
            .len()
    };
    assert_eq!(due(49_999, 30_000).await, 0);
    assert_eq!(due(50_000, 30_000).await, 1);
    assert_eq!(due(50_000, 0).await, 0);
    let back = store
        .apply(Transition {
            session_id: s.id,
            expected: Some(SessionState::Assigned),
            to: Some(SessionState::Requested),
            unassign: true,
            release: Some((supplier.id, 50_000)),
            record_attempt: Some(supplier.id),
            cool_down: Some(CoolDown {
                workspace: supplier.id,
                operator: None,
                until: 350_000,
            }),
            ..Transition::default()
        })
        .await
        .unwrap();
    assert_eq!(back.state, SessionState::Requested);
    assert_eq!(
        (
            back.operator_workspace_id,
            back.operator_id,
            back.assigned_ms,
            back.trust_tier,
            back.media
        ),
        (None, None, None, None, None),
        "nothing of the assignment is left"
    );
    let ws = store.workspace(supplier.id).await.unwrap().unwrap();
    assert_eq!(
        (ws.availability, ws.idle_since_ms, ws.cooling_down_until_ms),
        (Availability::Online, 50_000, Some(350_000))
    );
    assert!(ws.cooling_down(349_999) && !ws.cooling_down(350_000));
    assert_eq!(
        store.attempted_workspaces(s.id).await.unwrap(),
        vec![supplier.id]
    );
    assert_eq!(due(60_000, 30_000).await, 0, "REQUESTED again, not due");
}

pub async fn location_heartbeats_are_kept_and_found_by_workspace_and_time(store: &dyn Store) {
    let supplier = store
        .insert_workspace(build_workspace(
            "phone-s",
            &[Role::Supplier],
            Some(Point::new(1.0, 2.0)),
        ))
        .await
        .unwrap();
    let other = store
        .insert_workspace(build_workspace("phone-o", &[Role::Supplier], None))
        .await
        .unwrap();
    let at = Point::new(1.0, 2.0);
    for (seq, now) in [(1, 1_000), (2, 6_000), (3, 11_000)] {
        assert!(
            store
                .record_location(supplier.id, seq, at, 8.0, None, now)
                .await
                .unwrap()
        );
    }
    assert!(
        !store
            .record_location(supplier.id, 3, at, 8.0, None, 12_000)
            .await
            .unwrap(),
        "a replay is refused and not kept"
    );
    assert!(
        store
            .record_location(other.id, 1, at, 8.0, None, 6_000)
            .await
            .unwrap()
    );
    let found = store
        .workspace_locations(supplier.id, 5_000, 11_000)
        .await
        .unwrap();
    assert_eq!(
        found
            .iter()
            .map(|l| (l.sequence, l.received_ms))
            .collect::<Vec<_>>(),
        vec![(2, 6_000), (3, 11_000)]
    );
    assert_eq!(found[0].accuracy_m, 8.0);
}

async fn enrolled_device(store: &dyn Store, ws: &Workspace) -> Operator {
    let token = [ws.slug.len() as u8; 32];
    store
        .insert_enrollment_token(EnrollmentToken {
            hash: token,
            workspace_id: ws.id,
            created_ms: 1,
            expires_ms: i64::MAX,
        })
        .await
        .unwrap();
    let op = Operator {
        id: Uuid::new_v4(),
        workspace_id: Uuid::nil(),
        name: "d".into(),
        device_kind: lx_protocol::api::DeviceKind::Drone,
        address: Address([9; 20]),
        public_key: vec![2; 33],
        availability: Availability::Online,
        battery_pct: None,
        last_seen_ms: None,
        last_sequence: None,
        fix: None,
        created_ms: 1,
        disconnected_ms: None,
        cooling_down_until_ms: None,
    };
    store
        .enroll_operator(token, op, [7; 32], None, 1)
        .await
        .unwrap()
}

fn build_sample(sequence: u64, captured_ms: i64, received_ms: i64) -> StoredSample {
    StoredSample {
        sample: Sample::from_position(
            None,
            sequence,
            captured_ms as u64,
            Point::new(1.0, 2.0),
            3.0,
            lx_protocol::telemetry::Source::Gps,
        )
        .unwrap(),
        signature: [1; 65],
        received_ms,
    }
}

pub async fn device_capture_times_grow_and_its_outages_are_recorded(store: &dyn Store) {
    let ws = store
        .insert_workspace(build_workspace(
            "fleet-s",
            &[Role::Supplier],
            Some(Point::new(1.0, 2.0)),
        ))
        .await
        .unwrap();
    assert_eq!(ws.trust_tier, 0);
    let op = enrolled_device(store, &ws).await;
    assert_eq!(
        store.workspace(ws.id).await.unwrap().unwrap().trust_tier,
        1,
        "a workspace with a device is tier 1"
    );
    let silent = 10_000;
    let ingest = |samples: Vec<StoredSample>, now| async move {
        store
            .ingest_samples(op.id, samples, now, silent, u64::MAX)
            .await
    };
    ingest(
        vec![build_sample(1, 1_000, 1_100), build_sample(2, 2_000, 2_100)],
        2_100,
    )
    .await
    .unwrap();
    // A higher sequence captured earlier (or at the same instant) is refused, all or none.
    assert_eq!(
        ingest(
            vec![build_sample(3, 3_000, 3_100), build_sample(4, 3_000, 3_100)],
            3_100
        )
        .await,
        Err(IngestError::CapturedNotIncreasing {
            index: 1,
            captured_ms: 3_000,
            last_ms: 3_000
        })
    );
    assert_eq!(
        ingest(vec![build_sample(3, 1_500, 3_100)], 3_100).await,
        Err(IngestError::CapturedNotIncreasing {
            index: 0,
            captured_ms: 1_500,
            last_ms: 2_000
        })
    );
    assert!(
        store
            .operator_outages(op.id, 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    // Heard from again 30 s after its last contact: that silence is an outage.
    ingest(vec![build_sample(3, 3_000, 32_100)], 32_100)
        .await
        .unwrap();
    assert_eq!(
        store.operator_outages(op.id, 0, i64::MAX).await.unwrap(),
        vec![Outage {
            opened_ms: 2_100,
            closed_ms: Some(32_100)
        }]
    );
    // The broker announces it gone: open from its last contact until the next.
    assert!(
        store
            .mark_operator_disconnected(op.id, 50_000)
            .await
            .unwrap()
    );
    assert_eq!(
        store.operator_outages(op.id, 40_000, 40_000).await.unwrap(),
        vec![Outage {
            opened_ms: 32_100,
            closed_ms: None
        }]
    );
    store
        .touch_operator(op.id, 55_000, None, None, silent)
        .await
        .unwrap();
    assert_eq!(
        store
            .operator_outages(op.id, 40_000, i64::MAX)
            .await
            .unwrap(),
        vec![Outage {
            opened_ms: 32_100,
            closed_ms: Some(55_000)
        }]
    );
    assert!(
        store
            .operator_outages(op.id, 56_000, i64::MAX)
            .await
            .unwrap()
            .is_empty(),
        "only the outages overlapping the range"
    );
}

pub async fn stored_samples_keep_when_they_were_received(store: &dyn Store) {
    let consumer = store
        .insert_workspace(build_workspace("rx-c", &[Role::Consumer], None))
        .await
        .unwrap();
    let ws = store
        .insert_workspace(build_workspace("rx-s", &[Role::Supplier], None))
        .await
        .unwrap();
    let op = enrolled_device(store, &ws).await;
    let s = store
        .create_session(build_session(&consumer, 10, 100), u64::MAX, 1)
        .await
        .unwrap();
    let of_session = |sequence: u64| {
        let mut sample = build_sample(sequence, 1_000 * sequence as i64, 45_000);
        sample.sample.session_id = *s.id.as_bytes();
        sample
    };
    store
        .ingest_samples(op.id, vec![of_session(1)], 45_000, 10_000, u64::MAX)
        .await
        .unwrap();
    // A heartbeat's sample between, of no session.
    store
        .ingest_samples(
            op.id,
            vec![build_sample(2, 2_000, 46_000)],
            46_000,
            10_000,
            u64::MAX,
        )
        .await
        .unwrap();
    // A store-and-forward replay of many samples at once.
    let replay: Vec<StoredSample> = (3..=73).map(of_session).collect();
    store
        .ingest_samples(op.id, replay.clone(), 47_000, 10_000, u64::MAX)
        .await
        .unwrap();
    let mut expected = vec![of_session(1)];
    expected.extend(replay);
    assert_eq!(store.session_stored_samples(s.id).await.unwrap(), expected);
}

pub async fn a_webhook_failing_events_in_a_row_is_disabled_and_workspaces_take_turns(
    store: &dyn Store,
) {
    use WebhookEventType::*;
    let busy = store
        .insert_workspace(build_workspace("busy-tenant", &[Role::Consumer], None))
        .await
        .unwrap();
    let quiet = store
        .insert_workspace(build_workspace("quiet-tenant", &[Role::Consumer], None))
        .await
        .unwrap();
    let supplier = store
        .insert_workspace(build_workspace(
            "turns-supplier",
            &[Role::Supplier],
            Some(Point::new(1.0, 2.0)),
        ))
        .await
        .unwrap();
    let busy_hooks: Vec<Webhook> = (0..3)
        .map(|_| build_webhook(&busy, &WebhookEventType::ALL))
        .collect();
    let quiet_hook = build_webhook(&quiet, &WebhookEventType::ALL);
    for w in busy_hooks.iter().chain([&quiet_hook]) {
        store.insert_webhook(w.clone()).await.unwrap();
    }
    let mut sessions = Vec::new();
    for (consumer, at) in [(&busy, 20), (&quiet, 30)] {
        let s = store
            .create_session(build_session(consumer, 10, 100), u64::MAX, 1)
            .await
            .unwrap();
        store
            .apply(Transition {
                session_id: s.id,
                expected: Some(SessionState::Requested),
                to: Some(SessionState::Assigned),
                operator_workspace_id: Some(supplier.id),
                assigned_ms: Some(at),
                ..Transition::default()
            })
            .await
            .unwrap();
        sessions.push(s.id);
    }
    // The busy tenant's three are older, but the quiet one's comes second.
    let due = store.due_deliveries(1_000, 2).await.unwrap();
    let workspaces: Vec<Uuid> = due.iter().map(|d| d.workspace_id).collect();
    assert!(
        workspaces.contains(&quiet.id) && workspaces.contains(&busy.id),
        "one each: {workspaces:?}"
    );

    // Failed events in a row disable the webhook at the threshold.
    let dead = &busy_hooks[0];
    let head = store
        .due_deliveries(1_000, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.delivery.webhook_id == dead.id)
        .unwrap();
    let failed = Delivery {
        state: DeliveryState::Failed,
        attempts: 12,
        last_error: Some("connection refused".into()),
        updated_ms: 2_000,
        ..head.delivery
    };
    assert!(store.save_delivery(failed, 1).await.unwrap());
    let stored = store.webhook(busy.id, dead.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.failed_in_a_row, stored.disabled_ms),
        (1, Some(2_000))
    );
    // Disabled: nothing due, nothing new queued for it.
    store
        .apply(Transition {
            session_id: sessions[0],
            expected: Some(SessionState::Assigned),
            to: Some(SessionState::Live),
            started_ms: Some(100),
            ..Transition::default()
        })
        .await
        .unwrap();
    assert!(
        store
            .due_deliveries(10_000, 100)
            .await
            .unwrap()
            .iter()
            .all(|d| d.delivery.webhook_id != dead.id)
    );
    assert!(pending_types(store, dead.id).await.is_empty());
    assert_eq!(
        pending_types(store, busy_hooks[1].id).await,
        vec![SessionAssigned, SessionLive]
    );
    // Enabled again: counted afresh, and later events reach it.
    assert!(store.enable_webhook(busy.id, dead.id).await.unwrap());
    assert!(
        !store.enable_webhook(quiet.id, dead.id).await.unwrap(),
        "not theirs"
    );
    let stored = store.webhook(busy.id, dead.id).await.unwrap().unwrap();
    assert_eq!((stored.failed_in_a_row, stored.disabled_ms), (0, None));

    // Two workers read the same due delivery: one takes it, and it is not
    // due again until its lease ends.
    let quiet_head = store
        .due_deliveries(10_000, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.delivery.webhook_id == quiet_hook.id)
        .unwrap()
        .delivery;
    let due_ms = quiet_head.next_attempt_ms;
    assert!(
        store
            .claim_delivery(quiet_head.seq, due_ms, 50_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_delivery(quiet_head.seq, due_ms, 50_000)
            .await
            .unwrap()
    );
    let due_of_quiet = |now| async move {
        store
            .due_deliveries(now, 100)
            .await
            .unwrap()
            .iter()
            .any(|d| d.delivery.webhook_id == quiet_hook.id)
    };
    assert!(!due_of_quiet(49_999).await, "leased");
    assert!(
        due_of_quiet(50_000).await,
        "a worker that died with it is relieved"
    );
}

pub async fn retention_drops_only_what_can_no_longer_matter(store: &dyn Store) {
    let ws = store
        .insert_workspace(build_workspace(
            "kept-or-pruned",
            &[Role::Consumer, Role::Supplier],
            None,
        ))
        .await
        .unwrap();
    let challenge = |nonce: &str, expires_ms| Challenge {
        nonce: nonce.into(),
        wallet: Address([2; 20]),
        purpose: ChallengePurpose::SignIn,
        message: "m".into(),
        expires_ms,
    };
    store
        .insert_challenge(challenge("oldnonce01", 100))
        .await
        .unwrap();
    store
        .insert_challenge(challenge("newnonce01", 9_000))
        .await
        .unwrap();
    let quote = |expires_ms| Quote {
        id: Uuid::new_v4(),
        workspace_id: ws.id,
        point: Point::new(1.0, 2.0),
        duration_seconds: 60,
        rate_micro_usdc: 10,
        supply_bps: 10_000,
        demand_bps: 10_000,
        corridor_bps: 10_000,
        created_ms: 1,
        expires_ms,
        used_ms: None,
    };
    let (unused, used, fresh) = (quote(100), quote(100), quote(9_000));
    for q in [&unused, &used, &fresh] {
        store.insert_quote(q.clone()).await.unwrap();
    }
    let session = store
        .create_session(
            NewSession {
                quote_id: Some(used.id),
                ..build_session(&ws, 10, 100)
            },
            u64::MAX,
            50,
        )
        .await
        .unwrap();
    // A device's samples: an old heartbeat's, an old one of the session
    // (evidence: kept), a recent heartbeat's.
    let device = enrolled_device(store, &ws).await;
    let mut evidence = build_sample(2, 60, 100);
    evidence.sample.session_id = *session.id.as_bytes();
    for sample in [
        build_sample(1, 50, 100),
        evidence.clone(),
        build_sample(3, 70, 9_000),
    ] {
        let at = sample.received_ms;
        store
            .ingest_samples(device.id, vec![sample], at, 10_000, u64::MAX)
            .await
            .unwrap();
    }
    let (old_cookie, live_cookie) = (Uuid::new_v4(), Uuid::new_v4());
    store.revoke_cookie(old_cookie, 100, 0).await.unwrap();
    store.revoke_cookie(live_cookie, 9_000, 0).await.unwrap();
    for (sequence, at) in [(1, 100), (2, 9_000)] {
        assert!(
            store
                .record_location(ws.id, sequence, Point::new(1.0, 2.0), 5.0, None, at)
                .await
                .unwrap()
        );
    }

    let pruned = store
        .prune(PruneBefore {
            challenges_ms: 5_000,
            quotes_ms: 5_000,
            heartbeat_samples_ms: 5_000,
            locations_ms: 5_000,
            dispatch_attempts_ms: 5_000,
            enrollment_tokens_ms: 5_000,
            webhook_rows_ms: 5_000,
            outages_ms: 5_000,
            cookies_ms: 5_000,
        })
        .await
        .unwrap();
    assert_eq!(
        pruned, 6,
        "a challenge, a quote, a cookie, a location, the device's used enrollment token, a heartbeat's sample"
    );
    assert_eq!(
        store.session_stored_samples(session.id).await.unwrap(),
        vec![evidence]
    );
    let later = store
        .prune(PruneBefore {
            challenges_ms: 0,
            quotes_ms: 0,
            heartbeat_samples_ms: 10_000,
            locations_ms: 0,
            dispatch_attempts_ms: 0,
            enrollment_tokens_ms: 0,
            webhook_rows_ms: 0,
            outages_ms: 0,
            cookies_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(later, 1, "the recent heartbeat's sample, once it is old");
    assert!(
        store
            .take_challenge("oldnonce01", ChallengePurpose::SignIn)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .take_challenge("newnonce01", ChallengePurpose::SignIn)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.quote(unused.id).await.unwrap().is_none());
    assert!(
        store.quote(used.id).await.unwrap().is_some(),
        "a used quote stays with its session"
    );
    assert!(store.quote(fresh.id).await.unwrap().is_some());
    assert!(!store.cookie_revoked(old_cookie).await.unwrap());
    assert!(
        store.cookie_revoked(live_cookie).await.unwrap(),
        "still revoked while it could be used"
    );
    let kept = store.workspace_locations(ws.id, 0, 20_000).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
}

/// Generates one `#[tokio::test]` per suite case for a backend.
pub async fn enrollment_tokens_are_listed_newest_first_and_revoked_by_their_workspace(
    store: &dyn Store,
) {
    let mine = store
        .insert_workspace(build_workspace("token-owner", &[Role::Supplier], None))
        .await
        .unwrap();
    let theirs = store
        .insert_workspace(build_workspace("token-stranger", &[Role::Supplier], None))
        .await
        .unwrap();
    let token = |byte: u8, ws: &Workspace, created_ms| EnrollmentToken {
        hash: [byte; 32],
        workspace_id: ws.id,
        created_ms,
        expires_ms: created_ms + 60_000,
    };
    for t in [
        token(1, &mine, 10),
        token(2, &mine, 20),
        token(3, &theirs, 30),
    ] {
        store.insert_enrollment_token(t).await.unwrap();
    }
    let listed = store.enrollment_tokens_of(mine.id).await.unwrap();
    assert_eq!(
        listed,
        vec![(token(2, &mine, 20), None), (token(1, &mine, 10), None)]
    );
    assert_eq!(
        store
            .revoke_enrollment_token(mine.id, [3; 32])
            .await
            .unwrap(),
        None,
        "not its token"
    );
    assert_eq!(
        store
            .revoke_enrollment_token(mine.id, [2; 32])
            .await
            .unwrap(),
        Some(token(2, &mine, 20))
    );
    assert_eq!(
        store
            .revoke_enrollment_token(mine.id, [2; 32])
            .await
            .unwrap(),
        None,
        "gone"
    );
    assert_eq!(
        store.check_enrollment_token([2; 32], 15).await,
        Err(EnrollError::UnknownToken)
    );
    assert_eq!(
        store.enrollment_tokens_of(mine.id).await.unwrap(),
        vec![(token(1, &mine, 10), None)]
    );
    assert_eq!(
        store.enrollment_tokens_of(theirs.id).await.unwrap().len(),
        1
    );

    // A device enrolled with the remaining token rotates its own token.
    let device = Operator {
        id: Uuid::new_v4(),
        workspace_id: mine.id,
        name: "rotating".into(),
        device_kind: lx_protocol::api::DeviceKind::Drone,
        address: Address([9; 20]),
        public_key: vec![2; 33],
        availability: Availability::Offline,
        battery_pct: None,
        last_seen_ms: None,
        last_sequence: None,
        fix: None,
        created_ms: 12,
        disconnected_ms: None,
        cooling_down_until_ms: None,
    };
    store
        .enroll_operator([1; 32], device.clone(), [5; 32], None, 12)
        .await
        .unwrap();
    assert!(
        store
            .rotate_operator_token(device.id, [6; 32])
            .await
            .unwrap()
    );
    assert_eq!(
        store.operator_by_token([5; 32]).await.unwrap(),
        None,
        "the old token"
    );
    assert_eq!(
        store
            .operator_by_token([6; 32])
            .await
            .unwrap()
            .map(|o| o.id),
        Some(device.id)
    );
    assert!(
        !store
            .rotate_operator_token(Uuid::new_v4(), [7; 32])
            .await
            .unwrap()
    );
    assert_eq!(
        store.enrollment_tokens_of(mine.id).await.unwrap()[0].1,
        Some(12),
        "the token is used"
    );
}

pub async fn a_devices_latest_log_upload_replaces_the_one_before(store: &dyn Store) {
    let device = Uuid::from_u128(77);
    assert_eq!(store.device_logs(device).await.unwrap(), None);
    let first = DeviceLogs {
        operator_id: device,
        uploaded_ms: 1_000,
        truncated: true,
        lines: vec![
            "INFO agent started".into(),
            "WARN \"quoted\" ünïcode line".into(),
        ],
    };
    store.save_device_logs(first.clone()).await.unwrap();
    assert_eq!(store.device_logs(device).await.unwrap(), Some(first));
    let second = DeviceLogs {
        operator_id: device,
        uploaded_ms: 2_000,
        truncated: false,
        lines: vec![],
    };
    store.save_device_logs(second.clone()).await.unwrap();
    assert_eq!(store.device_logs(device).await.unwrap(), Some(second));
    assert_eq!(store.device_logs(Uuid::from_u128(78)).await.unwrap(), None);
}

#[macro_export]
macro_rules! store_suite {
    ($make:expr) => {
        $crate::store_suite!(@cases $make;
            workspaces_are_unique_by_slug_and_patched_atomically,
            a_challenge_is_taken_once,
            revoking_a_key_keeps_the_first_revocation_time,
            credit_counts_every_open_session_of_the_wallet,
            a_quote_is_consumed_only_by_a_session_that_is_created,
            a_transition_is_a_compare_and_swap_with_the_supplier,
            media_is_attached_once_and_windows_open_and_close,
            due_sessions_are_the_ones_past_a_deadline,
            final_charged_sessions_are_queued_once_in_sequence,
            webhook_events_are_queued_once_with_their_change_and_due_in_order,
            an_assignment_taken_back_frees_the_supplier_and_cools_it_down,
            location_heartbeats_are_kept_and_found_by_workspace_and_time,
            device_capture_times_grow_and_its_outages_are_recorded,
            stored_samples_keep_when_they_were_received,
            a_webhook_failing_events_in_a_row_is_disabled_and_workspaces_take_turns,
            retention_drops_only_what_can_no_longer_matter,
            enrollment_tokens_are_listed_newest_first_and_revoked_by_their_workspace,
            a_devices_latest_log_upload_replaces_the_one_before,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                // `$make` gives the store and whatever must outlive it (a
                // temporary directory, say).
                let (store, _keep) = $make;
                $crate::store::suite::$case(&store).await;
            }
        )*
    };
}
