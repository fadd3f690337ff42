//! Device telemetry in: the one path of HTTP (`POST /sessions/{id}/telemetry`,
//! a heartbeat's sample) and the fleet link (MQTT) from signed samples to
//! stored evidence. Every sample of a batch is decoded and its signature
//! verified (off the async workers) before any is stored; the store then
//! takes all or none, in sequence and capture order, within the session's
//! cap.

use lx_protocol::ErrorCode;
use lx_protocol::api::SessionState;
use lx_protocol::telemetry::SampleJson;
use lx_protocol::time::format_millis;
use uuid::Uuid;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::store::{IngestError, Operator, StoredSample};

/// Most samples accepted in one request or message (a store-and-forward
/// replay sends its backlog in batches).
pub(crate) const MAX_BATCH: usize = 1000;

/// The highest sequence a device may use: stores keep sequences as signed
/// 64-bit integers, and above this one a later sample would no longer
/// store as above the last.
pub(crate) const MAX_SEQUENCE: u64 = i64::MAX.unsigned_abs();

/// Verifies and stores a device's samples, of one session or (`None`) of
/// none: the one path of HTTP and MQTT telemetry. Returns the device's
/// last stored sequence.
pub(crate) async fn device_samples(
    app: &App,
    op: &Operator,
    session_id: Option<Uuid>,
    samples: &[SampleJson],
) -> ApiResult<u64> {
    if samples.is_empty() || samples.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "body",
            format!("must hold 1 to {MAX_BATCH} samples"),
        ));
    }
    let Some(session_id) = session_id else {
        return verify_and_store(app, op, None, samples, None, u64::MAX).await;
    };
    let session = app
        .store
        .session(session_id)
        .await?
        .ok_or_else(ApiError::session_not_found)?;
    if session.operator_id != Some(op.id) {
        if session.operator_workspace_id == Some(op.workspace_id) {
            return Err(ApiError::new(
                ErrorCode::WrongDevice,
                "another device of this workspace serves the session",
            )
            .with_detail("telemetry:wrongDevice"));
        }
        return Err(ApiError::session_not_found());
    }
    let late_ok = session
        .ended_ms
        .is_some_and(|e| app.now() <= e + app.settle_delay_ms())
        && !session.meter_final;
    let open = matches!(
        session.state,
        SessionState::Assigned | SessionState::Live | SessionState::Paused
    );
    if !open && !late_ok {
        return Err(ApiError::invalid_state("telemetry", session.state));
    }
    let cap = crate::session::evidence::max_samples(session.max_duration_seconds);
    verify_and_store(app, op, Some(session.id), samples, session.assigned_ms, cap).await
}

/// Verifies every sample, then stores all or none.
pub(crate) async fn verify_and_store(
    app: &App,
    op: &Operator,
    session: Option<Uuid>,
    samples: &[SampleJson],
    not_before_ms: Option<i64>,
    max_session_samples: u64,
) -> ApiResult<u64> {
    let key = crate::verify::DeviceKey::from_sec1(&op.public_key).ok_or_else(|| {
        tracing::error!(operator = %op.id, "stored device key does not parse");
        ApiError::internal()
    })?;
    let now = app.now();
    let chain_id = app.config.chain.chain_id;
    let skew = i64::from(app.config.telemetry.max_future_skew_ms);
    let at = |i: usize, field: &str| {
        if samples.len() == 1 {
            field.to_owned()
        } else {
            format!("[{i}].{field}")
        }
    };
    let mut decoded = Vec::with_capacity(samples.len());
    for (i, json) in samples.iter().enumerate() {
        let (sample, signature) = json.decode(session).map_err(|e| match e {
            lx_protocol::telemetry::TelemetryError::Field { field, problem } => {
                ApiError::invalid(&at(i, field), problem)
            }
            other => ApiError::invalid(&at(i, "signature"), other),
        })?;
        if sample.sequence > MAX_SEQUENCE {
            return Err(ApiError::invalid(
                &at(i, "sequence"),
                format!("must be at most {MAX_SEQUENCE}"),
            ));
        }
        decoded.push((sample, signature));
    }
    // Signatures are checked on every core, by the verifier threads.
    let domain = lx_protocol::telemetry::domain_separator(chain_id);
    let items: Vec<crate::verify::SignedDigest> = decoded
        .iter()
        .map(|(s, sig)| (s.digest_in(&domain), sig.0))
        .collect();
    let bad = crate::verify::first_invalid(key, items).await;
    if let Some(i) = bad {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            format!(
                "{}: does not verify against the device key",
                at(i, "signature")
            ),
        )
        .with_detail("telemetry:badSignature"));
    }
    let mut verified = Vec::with_capacity(decoded.len());
    for (i, (sample, signature)) in decoded.into_iter().enumerate() {
        let captured = i64::try_from(sample.captured_at_ms).unwrap_or(i64::MAX);
        if captured > now + skew {
            return Err(ApiError::new(
                ErrorCode::FutureTimestamp,
                format!(
                    "{}: captured {} ms in the future",
                    at(i, "capturedAt"),
                    captured - now
                ),
            )
            .with_detail("telemetry:future"));
        }
        if let Some(floor) = not_before_ms.filter(|&f| captured < f) {
            return Err(ApiError::new(
                ErrorCode::StaleTimestamp,
                format!(
                    "{}: captured {} ms before the session was assigned",
                    at(i, "capturedAt"),
                    floor - captured
                ),
            )
            .with_detail("telemetry:beforeAssigned"));
        }
        verified.push(StoredSample {
            sample,
            signature: signature.0,
            received_ms: now,
        });
    }
    let bound = app.late_sample_bound_ms();
    app.store.ingest_samples(op.id, verified, now, bound, max_session_samples).await.map_err(|err| match err {
        IngestError::Replayed { index, sequence, last } => ApiError::new(
            ErrorCode::ReplayedSequence,
            format!("sequence {sequence} (sample {index}) is not above the device's last accepted {last}"),
        )
        .with_detail(lx_protocol::telemetry::replayed_detail(last)),
        IngestError::CapturedNotIncreasing { index, captured_ms, last_ms } => ApiError::new(
            ErrorCode::StaleTimestamp,
            format!(
                "{}: {} is not after the capture of the device's last stored sample ({}); \
                 capture times must increase with the sequence",
                at(index, "capturedAt"),
                format_millis(captured_ms),
                format_millis(last_ms),
            ),
        )
        .with_detail("telemetry:capturedAtNotIncreasing"),
        IngestError::SessionFull { held, cap } => ApiError::new(
            ErrorCode::InvalidState,
            format!("the session holds {held} samples, the most it may ({cap}): two a second of its maximum duration"),
        )
        .with_detail("telemetry:sessionFull"),
        IngestError::NotFound => ApiError::operator_not_found(),
        IngestError::Store(e) => e.into(),
    })
}
