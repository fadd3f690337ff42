//! A session's proof bundle: everything its meter judged it by, for anyone
//! to check offline with [`lx_protocol::proof::verify`].
//!
//! The bundle takes the evidence exactly as [`App::act`] hands it to the
//! meter (the same samples, outages, heartbeats and rules), so that an
//! honest server's bundle always recomputes to the meter it stated.

use lx_protocol::api::{MeterDto, TelemetryDomainDto, WindowReason};
use lx_protocol::proof::{
    EvidenceKind, FORMAT, ProofBundle, ProofChain, ProofLocation, ProofOutage, ProofRules,
    ProofSample, ProofTerms,
};
use lx_protocol::telemetry;
use lx_protocol::time::{UnixMillis, format_millis};
use lx_protocol::wallet::Signature65;

use crate::app::App;
use crate::session::evidence;
use crate::store::{Session, StoreError, dto::settlement_view};

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// Never went LIVE, or has not ended: there is no meter to prove.
    #[error("the session has no ended meter to prove")]
    NotEnded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl App {
    pub async fn proof_bundle(
        &self,
        session: &Session,
        now: UnixMillis,
    ) -> Result<ProofBundle, ProofError> {
        let (Some(started), Some(ended), Some(meter)) =
            (session.started_ms, session.ended_ms, session.meter)
        else {
            return Err(ProofError::NotEnded);
        };
        let t = &self.config.telemetry;
        let (recorded, derived): (Vec<_>, Vec<_>) = session
            .windows
            .iter()
            .partition(|w| matches!(w.reason, WindowReason::Paused | WindowReason::NetworkError));
        let mut bundle = ProofBundle {
            format: FORMAT,
            session: ProofTerms {
                id: session.id,
                state: session.state,
                lat: session.point.lat,
                lng: session.point.lng,
                geofence_radius_meters: session.geofence_radius_m,
                max_duration_seconds: session.max_duration_seconds,
                rate_per_second_micro_usdc: session.rate_micro_usdc,
                consumer_workspace_id: session.consumer_workspace_id,
                operator_workspace_id: session.operator_workspace_id,
                operator_id: session.operator_id,
                started_at_ms: started,
                ended_at_ms: ended,
            },
            evidence: EvidenceKind::None,
            rules: ProofRules {
                fresh_ms: i64::from(t.fresh_seconds) * 1000,
                max_accuracy_cm: t.max_accuracy_meters.saturating_mul(100),
                late_sample_bound_ms: self.late_sample_bound_ms(),
            },
            telemetry_domain: TelemetryDomainDto {
                name: telemetry::DOMAIN_NAME.into(),
                version: telemetry::DOMAIN_VERSION.into(),
                chain_id: self.config.chain.chain_id,
            },
            signer: None,
            track: Vec::new(),
            locations: Vec::new(),
            windows: recorded.into_iter().map(|&w| w.into()).collect(),
            device_outages: Vec::new(),
            meter: MeterDto::from(meter),
            derived_windows: derived.into_iter().map(|&w| w.into()).collect(),
            meter_final: session.meter_final,
            settlement: None,
            chain: None,
            generated_at: format_millis(now),
        };
        match (session.operator_id, session.operator_workspace_id) {
            (Some(device), _) => {
                bundle.evidence = EvidenceKind::SignedTelemetry;
                bundle.signer = self
                    .store
                    .operator(device)
                    .await?
                    .map(|op| op.address.to_checksum());
                let mut samples = self.store.session_stored_samples(session.id).await?;
                samples.sort_by_key(|s| s.sample.sequence);
                bundle.track = samples
                    .iter()
                    .map(|s| {
                        ProofSample::encode(&s.sample, &Signature65(s.signature), s.received_ms)
                    })
                    .collect();
                let since = session.assigned_ms.unwrap_or(session.created_ms);
                bundle.device_outages = self
                    .store
                    .operator_outages(device, since, ended)
                    .await?
                    .into_iter()
                    .map(ProofOutage::from)
                    .collect();
            }
            (None, Some(workspace)) => {
                bundle.evidence = EvidenceKind::LocationHeartbeats;
                bundle.rules.fresh_ms = i64::from(t.heartbeat_fresh_seconds) * 1000;
                let locations = self
                    .store
                    .workspace_locations(workspace, started - bundle.rules.fresh_ms, ended)
                    .await?;
                bundle.locations = evidence::heartbeat_fixes(&locations)
                    .into_iter()
                    .map(|f| ProofLocation {
                        received_at_ms: f.captured_ms,
                        lat: f.point.lat,
                        lng: f.point.lng,
                        accuracy_cm: f.accuracy_cm,
                    })
                    .collect();
            }
            (None, None) => {}
        }
        let record = self.store.settlement(session.id).await?;
        bundle.settlement = Some(settlement_view(session, record.as_ref()));
        bundle.chain = self.chain.as_ref().map(|chain| ProofChain {
            chain_id: self.config.chain.chain_id,
            settlement_contract: chain.contracts().map(|(s, _)| s.to_checksum()),
        });
        Ok(bundle)
    }
}
