//! The wire form of stored records, shared by the routes and the webhook
//! payloads so that a webhook's `data` is exactly what a GET returns.

use lx_protocol::api::{
    MeterDto, OfferRef, SessionDto, SettlementDto, SettlementStatus, WindowDto,
};
use lx_protocol::time::format_millis;

use crate::store::{Session, SettlementRecord, SettlementState};

pub fn session_dto(s: &Session) -> SessionDto {
    SessionDto {
        id: s.id,
        state: s.state,
        lat: s.point.lat,
        lng: s.point.lng,
        geofence_radius_meters: s.geofence_radius_m,
        max_duration_seconds: s.max_duration_seconds,
        wait_timeout_seconds: s.wait_timeout_seconds,
        rate_per_second_micro_usdc: s.rate_micro_usdc,
        hold_micro_usdc: s.hold_micro_usdc(),
        consumer_workspace_id: s.consumer_workspace_id,
        operator_workspace_id: s.operator_workspace_id,
        operator_id: s.operator_id,
        quote_id: s.quote_id,
        min_trust_tier: s.min_trust_tier,
        trust_tier: s.trust_tier,
        offer: s.offer.map(|o| OfferRef {
            workspace_id: o.workspace_id,
            expires_at: format_millis(o.expires_ms),
        }),
        created_at: format_millis(s.created_ms),
        expires_at: format_millis(s.wait_deadline_ms()),
        assigned_at: s.assigned_ms.map(format_millis),
        started_at: s.started_ms.map(format_millis),
        ended_at: s.ended_ms.map(format_millis),
        expiry_reason: s.expiry_reason,
        windows: s
            .windows
            .iter()
            .map(|w| WindowDto {
                reason: w.reason,
                opened_at: format_millis(w.opened_ms),
                closed_at: w.closed_ms.map(format_millis),
            })
            .collect(),
        meter: s.meter.map(MeterDto::from),
        clean_seconds: s.meter.map(|m| m.clean_seconds),
        failed_seconds: s.meter.map(|m| m.failed_seconds),
        charged_micro_usdc: s.meter.map(|m| m.charged_micro_usdc),
        meter_final: s.meter_final,
    }
}

/// A queued settlement as `GET /settlements/{sessionId}` shows it.
pub fn settlement_dto(r: &SettlementRecord) -> SettlementDto {
    SettlementDto {
        session_id: r.session_id,
        state: match r.state {
            SettlementState::Pending => SettlementStatus::Pending,
            SettlementState::Submitted => SettlementStatus::Submitted,
            SettlementState::Confirmed => SettlementStatus::Confirmed,
            SettlementState::Unpaid => SettlementStatus::Unpaid,
            SettlementState::Failed => SettlementStatus::Failed,
        },
        sequence: Some(r.sequence),
        to_amount_micro_usdc: Some(r.to_amount),
        fee_amount_micro_usdc: Some(r.fee_amount),
        tx_hash: r.tx_hash.clone(),
        block_number: r.block,
        attempts: r.attempts,
        last_error: r.last_error.clone(),
        updated_at: Some(format_millis(r.updated_ms)),
    }
}

/// The settlement as clients see it; before a record exists, whether one is
/// still to come or none is needed.
pub fn settlement_view(session: &Session, record: Option<&SettlementRecord>) -> SettlementDto {
    if let Some(r) = record {
        return settlement_dto(r);
    }
    let nothing_due =
        session.meter_final && session.meter.is_some_and(|m| m.charged_micro_usdc == 0);
    SettlementDto {
        session_id: session.id,
        state: if nothing_due {
            SettlementStatus::NotRequired
        } else {
            SettlementStatus::NotReady
        },
        sequence: None,
        to_amount_micro_usdc: None,
        fee_amount_micro_usdc: None,
        tx_hash: None,
        block_number: None,
        attempts: 0,
        last_error: None,
        updated_at: None,
    }
}
