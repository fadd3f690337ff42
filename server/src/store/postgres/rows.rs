//! Rows of the PostgreSQL store read back into the store's types, column
//! for column as `store::schema` lists them.

use lx_protocol::api::{KeyEnvironment, Scope};
use lx_protocol::geo::Point;
use lx_protocol::telemetry::{Sample, Source};
use lx_protocol::wallet::Address;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use uuid::Uuid;

use super::backend;
use crate::store::schema::{enum_parse, list_parse};
use crate::store::*;

pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx)
        .map_err(|e| backend(format!("column {idx}: {e}")))
}

fn out_of_range(idx: usize, value: i64) -> StoreError {
    backend(format!("column {idx}: {value} is out of range"))
}

/// An integer column narrowed to its type.
pub(super) fn int<T: TryFrom<i64>>(row: &Row, idx: usize) -> StoreResult<T> {
    let v: i64 = get(row, idx)?;
    T::try_from(v).map_err(|_| out_of_range(idx, v))
}

pub(super) fn opt_int<T: TryFrom<i64>>(row: &Row, idx: usize) -> StoreResult<Option<T>> {
    get::<Option<i64>>(row, idx)?
        .map(|v| T::try_from(v).map_err(|_| out_of_range(idx, v)))
        .transpose()
}

pub(super) fn uuid(row: &Row, idx: usize) -> StoreResult<Uuid> {
    Uuid::parse_str(get(row, idx)?).map_err(|e| backend(format!("column {idx}: {e}")))
}

pub(super) fn opt_uuid(row: &Row, idx: usize) -> StoreResult<Option<Uuid>> {
    get::<Option<&str>>(row, idx)?
        .map(|t| Uuid::parse_str(t).map_err(|e| backend(format!("column {idx}: {e}"))))
        .transpose()
}

pub(super) fn address(row: &Row, idx: usize) -> StoreResult<Address> {
    get::<&str>(row, idx)?
        .parse::<Address>()
        .map_err(|e| backend(format!("column {idx}: {e}")))
}

pub(super) fn enumeration<T: DeserializeOwned>(row: &Row, idx: usize) -> StoreResult<T> {
    enum_parse(get(row, idx)?).map_err(|e| backend(format!("column {idx}: {e}")))
}

fn opt_enumeration<T: DeserializeOwned>(row: &Row, idx: usize) -> StoreResult<Option<T>> {
    get::<Option<&str>>(row, idx)?
        .map(|t| enum_parse(t).map_err(|e| backend(format!("column {idx}: {e}"))))
        .transpose()
}

fn list<T: DeserializeOwned>(row: &Row, idx: usize) -> StoreResult<Vec<T>> {
    list_parse(get(row, idx)?).map_err(|e| backend(format!("column {idx}: {e}")))
}

fn bytes<const N: usize>(row: &Row, idx: usize) -> StoreResult<[u8; N]> {
    let v: Vec<u8> = get(row, idx)?;
    v.try_into()
        .map_err(|_| backend(format!("column {idx}: not {N} bytes")))
}

pub(super) fn workspace(row: &Row) -> StoreResult<Workspace> {
    let coverage = match (
        get::<Option<f64>>(row, 6)?,
        get::<Option<f64>>(row, 7)?,
        opt_int::<u32>(row, 8)?,
    ) {
        (Some(lat), Some(lng), Some(radius_m)) => Some(CoverageArea { lat, lng, radius_m }),
        _ => None,
    };
    Ok(Workspace {
        id: uuid(row, 0)?,
        slug: get(row, 1)?,
        name: get(row, 2)?,
        wallet: address(row, 3)?,
        roles: list(row, 4)?,
        availability: enumeration(row, 5)?,
        coverage,
        device_kind: opt_enumeration(row, 9)?,
        auto_accept: get(row, 10)?,
        offer_timeout_seconds: int(row, 11)?,
        idle_since_ms: get(row, 12)?,
        created_ms: get(row, 13)?,
        cooling_down_until_ms: get(row, 14)?,
        trust_tier: if get::<bool>(row, 15)? {
            lx_protocol::api::TRUST_TIER_DEVICE
        } else {
            lx_protocol::api::TRUST_TIER_WORKSPACE
        },
    })
}

/// A session without its windows.
fn session(row: &Row) -> StoreResult<Session> {
    let offer = match (opt_uuid(row, 12)?, get::<Option<i64>>(row, 13)?) {
        (Some(workspace_id), Some(expires_ms)) => Some(Offer {
            workspace_id,
            expires_ms,
        }),
        _ => None,
    };
    let media = match (
        get::<Option<String>>(row, 19)?,
        get::<Option<String>>(row, 20)?,
        get::<Option<String>>(row, 21)?,
    ) {
        (Some(backend_ref), Some(whip_url), Some(whep_url)) => Some(MediaEndpoints {
            backend_ref,
            whip_url,
            whep_url,
        }),
        _ => None,
    };
    let meter = match get::<Option<i64>>(row, 22)? {
        Some(_) => Some(Meter {
            clean_seconds: int(row, 22)?,
            failed_seconds: int(row, 23)?,
            charged_micro_usdc: int(row, 24)?,
            fee_micro_usdc: int(row, 25)?,
            operator_earned_micro_usdc: int(row, 26)?,
            fee_bps: int(row, 27)?,
        }),
        None => None,
    };
    Ok(Session {
        id: uuid(row, 0)?,
        state: enumeration(row, 1)?,
        point: Point::new(get(row, 2)?, get(row, 3)?),
        geofence_radius_m: int(row, 4)?,
        max_duration_seconds: int(row, 5)?,
        wait_timeout_seconds: int(row, 6)?,
        rate_micro_usdc: int(row, 7)?,
        consumer_workspace_id: uuid(row, 8)?,
        consumer_wallet: address(row, 9)?,
        operator_workspace_id: opt_uuid(row, 10)?,
        quote_id: opt_uuid(row, 11)?,
        offer,
        created_ms: get(row, 14)?,
        assigned_ms: get(row, 15)?,
        started_ms: get(row, 16)?,
        ended_ms: get(row, 17)?,
        expiry_reason: opt_enumeration(row, 18)?,
        media,
        meter,
        operator_id: opt_uuid(row, 28)?,
        meter_final: get(row, 29)?,
        windows: Vec::new(),
        min_trust_tier: int(row, 30)?,
        trust_tier: opt_int(row, 31)?,
    })
}

/// A session with its windows, read as three arrays after its columns.
pub(super) fn session_with_windows(row: &Row) -> StoreResult<Session> {
    let mut session = session(row)?;
    let reasons: Vec<&str> = get(row, 32)?;
    let opened: Vec<i64> = get(row, 33)?;
    let closed: Vec<Option<i64>> = get(row, 34)?;
    session.windows = reasons
        .iter()
        .zip(opened)
        .zip(closed)
        .map(|((reason, opened_ms), closed_ms)| {
            Ok(Window {
                reason: enum_parse(reason).map_err(|e| backend(format!("window reason: {e}")))?,
                opened_ms,
                closed_ms,
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(session)
}

pub(super) fn settlement(row: &Row) -> StoreResult<SettlementRecord> {
    Ok(SettlementRecord {
        session_id: uuid(row, 0)?,
        consumer: address(row, 1)?,
        operator: address(row, 2)?,
        sequence: int(row, 3)?,
        rate_micro_usdc: int(row, 4)?,
        seconds: int(row, 5)?,
        to_amount: int(row, 6)?,
        fee_amount: int(row, 7)?,
        state: enumeration(row, 8)?,
        tx_hash: get(row, 9)?,
        nonce: opt_int(row, 10)?,
        block: opt_int(row, 11)?,
        attempts: int(row, 12)?,
        last_error: get(row, 13)?,
        next_attempt_ms: get(row, 14)?,
        queued_ms: get(row, 15)?,
        updated_ms: get(row, 16)?,
        verify_onchain: get(row, 17)?,
    })
}

pub(super) fn api_key(row: &Row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: uuid(row, 0)?,
        workspace_id: uuid(row, 1)?,
        hash: bytes(row, 2)?,
        prefix: get(row, 3)?,
        label: get(row, 4)?,
        environment: enumeration::<KeyEnvironment>(row, 5)?,
        scopes: list::<Scope>(row, 6)?,
        created_ms: get(row, 7)?,
        revoked_ms: get(row, 8)?,
    })
}

pub(super) fn quote(row: &Row) -> StoreResult<Quote> {
    Ok(Quote {
        id: uuid(row, 0)?,
        workspace_id: uuid(row, 1)?,
        point: Point::new(get(row, 2)?, get(row, 3)?),
        duration_seconds: int(row, 4)?,
        rate_micro_usdc: int(row, 5)?,
        supply_bps: int(row, 6)?,
        demand_bps: int(row, 7)?,
        corridor_bps: int(row, 8)?,
        created_ms: get(row, 9)?,
        expires_ms: get(row, 10)?,
        used_ms: get(row, 11)?,
    })
}

pub(super) fn operator(row: &Row) -> StoreResult<Operator> {
    let fix = match (
        opt_int::<i32>(row, 10)?,
        opt_int::<i32>(row, 11)?,
        opt_int::<u32>(row, 12)?,
        get::<Option<i64>>(row, 13)?,
    ) {
        (Some(lat_e7), Some(lng_e7), Some(accuracy_cm), Some(captured_ms)) => Some(DeviceFix {
            lat_e7,
            lng_e7,
            accuracy_cm,
            captured_ms,
        }),
        _ => None,
    };
    Ok(Operator {
        id: uuid(row, 0)?,
        workspace_id: uuid(row, 1)?,
        name: get(row, 2)?,
        device_kind: enumeration(row, 3)?,
        address: address(row, 4)?,
        public_key: get(row, 5)?,
        availability: enumeration(row, 6)?,
        battery_pct: opt_int(row, 7)?,
        last_seen_ms: get(row, 8)?,
        last_sequence: opt_int(row, 9)?,
        fix,
        created_ms: get(row, 14)?,
        disconnected_ms: get(row, 15)?,
        cooling_down_until_ms: get(row, 16)?,
    })
}

pub(super) fn mqtt_account(row: &Row) -> StoreResult<MqttAccount> {
    Ok(MqttAccount {
        username: get(row, 0)?,
        password_hash: get(row, 1)?,
        workspace_id: uuid(row, 2)?,
        operator_id: opt_uuid(row, 3)?,
        created_ms: get(row, 4)?,
    })
}

pub(super) fn stored_sample(row: &Row) -> StoreResult<StoredSample> {
    let session_id = match opt_uuid(row, 0)? {
        Some(id) => *id.as_bytes(),
        None => [0; 16],
    };
    let source: i64 = get(row, 7)?;
    let sample = Sample {
        session_id,
        sequence: int(row, 1)?,
        captured_at_ms: int(row, 2)?,
        lat_e7: int(row, 3)?,
        lng_e7: int(row, 4)?,
        accuracy_cm: int(row, 5)?,
        source: u8::try_from(source)
            .ok()
            .and_then(Source::from_code)
            .ok_or_else(|| backend(format!("unknown telemetry source {source}")))?,
    };
    Ok(StoredSample {
        sample,
        signature: bytes(row, 8)?,
        received_ms: get(row, 9)?,
    })
}

pub(super) fn webhook(row: &Row) -> StoreResult<Webhook> {
    Ok(Webhook {
        id: uuid(row, 0)?,
        workspace_id: uuid(row, 1)?,
        url: get(row, 2)?,
        events: list(row, 3)?,
        secret: get(row, 4)?,
        created_ms: get(row, 5)?,
        failed_in_a_row: int(row, 6)?,
        disabled_ms: get(row, 7)?,
    })
}

pub(super) fn delivery(row: &Row) -> StoreResult<Delivery> {
    Ok(Delivery {
        seq: get(row, 0)?,
        webhook_id: uuid(row, 1)?,
        event_id: uuid(row, 2)?,
        event_type: enumeration(row, 3)?,
        session_id: uuid(row, 4)?,
        event_ms: get(row, 5)?,
        state: enumeration(row, 6)?,
        attempts: int(row, 7)?,
        last_status: opt_int(row, 8)?,
        last_error: get(row, 9)?,
        next_attempt_ms: get(row, 10)?,
        delivered_ms: get(row, 11)?,
        updated_ms: get(row, 12)?,
    })
}
