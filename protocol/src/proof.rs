//! A session's proof bundle, and its offline check.
//!
//! `GET /sessions/{id}/proof` hands out everything the meter judged a
//! session by: its terms, the device's signed track with when each sample
//! reached the server, the recorded PAUSED and NETWORK_ERROR windows, the
//! device's outages, the meter's rules and result, and the settlement.
//! [`verify`] needs nothing else: it recovers every signature in the bundle's
//! EIP-712 domain, looks for missing sequence numbers, applies the same
//! no-backdating rule ([`crate::evidence`]) and the same meter
//! ([`crate::meter`]) the server applies, and says where the bundle and its
//! own figures differ.
//!
//! What it cannot check offline: that the server recorded the windows and
//! outages truthfully (they are the server's observations, not the
//! device's), and that the settlement transaction is on chain (its hash is
//! in the bundle for anyone to look up).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::{
    MeterDto, SessionState, SettlementDto, SignedTelemetryDto, TelemetryDomainDto, WindowReason,
};
use crate::evidence::{self, Outage};
use crate::geo::Point;
use crate::meter::{self, Fix, MeterInput, TelemetryRules, Window};
use crate::telemetry::{self, Sample, Source};
use crate::wallet::{Address, Signature65, recover_prehash};

/// The bundle format this crate writes and checks.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProofBundle {
    /// [`FORMAT`].
    pub format: u32,
    pub session: ProofTerms,
    /// What the supplier proved its position with.
    pub evidence: EvidenceKind,
    pub rules: ProofRules,
    /// The EIP-712 domain the track is signed in.
    pub telemetry_domain: TelemetryDomainDto,
    /// The device's address (EIP-55), with `SIGNED_TELEMETRY` evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Every sample the server stored for the session, in sequence order.
    #[serde(default)]
    pub track: Vec<ProofSample>,
    /// A tier-0 supplier's location heartbeats (unsigned), in the order
    /// received.
    #[serde(default)]
    pub locations: Vec<ProofLocation>,
    /// The PAUSED and NETWORK_ERROR windows the server recorded.
    #[serde(default)]
    pub windows: Vec<ProofWindow>,
    /// When the server lost and regained the device, from its assignment to
    /// the end: a late sample counts only if captured inside one of these or
    /// a NETWORK_ERROR window.
    #[serde(default)]
    pub device_outages: Vec<ProofOutage>,
    pub meter: MeterDto,
    /// The STALE_TELEMETRY and OUTSIDE_GEOFENCE windows the meter derived.
    #[serde(default)]
    pub derived_windows: Vec<ProofWindow>,
    /// False while late samples may still change the meter.
    pub meter_final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementDto>,
    /// The chain the settlement is on, when the server has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ProofChain>,
    pub generated_at: String,
}

/// The terms the meter applies, as agreed when the session was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProofTerms {
    pub id: Uuid,
    pub state: SessionState,
    pub lat: f64,
    pub lng: f64,
    pub geofence_radius_meters: u32,
    pub max_duration_seconds: u32,
    pub rate_per_second_micro_usdc: u64,
    pub consumer_workspace_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_workspace_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<Uuid>,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EvidenceKind {
    /// An enrolled device's EIP-712 samples (trust tier 1).
    SignedTelemetry,
    /// A workspace's unsigned location heartbeats (trust tier 0).
    LocationHeartbeats,
    /// No supplier position at all: every second is STALE_TELEMETRY.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProofRules {
    /// A second is covered by a fix captured at most this long before its end.
    pub fresh_ms: i64,
    pub max_accuracy_cm: u32,
    /// A sample received later than this after its capture counts only
    /// inside an outage.
    pub late_sample_bound_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProofSample {
    /// The `Telemetry` message as signed.
    pub signed: SignedTelemetryDto,
    /// 65 bytes, hex (`0x…`).
    pub signature: String,
    /// When the server received it (Unix ms): the no-backdating rule needs it.
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProofLocation {
    pub received_at_ms: i64,
    pub lat: f64,
    pub lng: f64,
    pub accuracy_cm: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProofWindow {
    pub reason: WindowReason,
    pub opened_at_ms: i64,
    /// Absent: open until the end of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProofOutage {
    pub opened_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProofChain {
    pub chain_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_contract: Option<String>,
}

impl From<Window> for ProofWindow {
    fn from(w: Window) -> Self {
        Self {
            reason: w.reason,
            opened_at_ms: w.opened_ms,
            closed_at_ms: w.closed_ms,
        }
    }
}

impl From<ProofWindow> for Window {
    fn from(w: ProofWindow) -> Self {
        Self {
            reason: w.reason,
            opened_ms: w.opened_at_ms,
            closed_ms: w.closed_at_ms,
        }
    }
}

impl From<Outage> for ProofOutage {
    fn from(o: Outage) -> Self {
        Self {
            opened_at_ms: o.opened_ms,
            closed_at_ms: o.closed_ms,
        }
    }
}

impl ProofSample {
    /// The signed message and signature of a stored sample.
    pub fn encode(sample: &Sample, signature: &Signature65, received_ms: i64) -> Self {
        Self {
            signed: SignedTelemetryDto::from(sample),
            signature: signature.to_string(),
            received_at_ms: received_ms,
        }
    }

    fn decode(&self) -> Result<(Sample, Signature65), String> {
        let s = &self.signed;
        let hex = s.session_id.strip_prefix("0x").unwrap_or(&s.session_id);
        let mut session_id = [0u8; 16];
        hex::decode_to_slice(hex, &mut session_id)
            .map_err(|_| "signed.sessionId is not 16 bytes of hex".to_owned())?;
        let source = Source::from_code(s.source)
            .ok_or_else(|| format!("signed.source {} is not a known source", s.source))?;
        let signature = self
            .signature
            .parse::<Signature65>()
            .map_err(|e| format!("signature: {e}"))?;
        Ok((
            Sample {
                session_id,
                sequence: s.sequence,
                captured_at_ms: s.captured_at_ms,
                lat_e7: s.lat_e7,
                lng_e7: s.lng_e7,
                accuracy_cm: s.accuracy_cm,
                source,
            },
            signature,
        ))
    }
}

impl From<&Sample> for SignedTelemetryDto {
    fn from(s: &Sample) -> Self {
        Self {
            session_id: format!("0x{}", hex::encode(s.session_id)),
            sequence: s.sequence,
            captured_at_ms: s.captured_at_ms,
            lat_e7: s.lat_e7,
            lng_e7: s.lng_e7,
            accuracy_cm: s.accuracy_cm,
            source: s.source.code(),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// No finding is a failure.
    pub ok: bool,
    pub session_id: Uuid,
    pub samples_checked: u64,
    /// Samples whose signature recovers the bundle's signer.
    pub samples_signed_by_device: u64,
    /// The meter recomputed from the bundle's evidence.
    pub recomputed: MeterDto,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub failure: bool,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = if self.failure { "FAIL" } else { "note" };
        write!(f, "{tag}: {}", self.message)
    }
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn fail(&mut self, message: impl Into<String>) {
        self.0.push(Finding {
            failure: true,
            message: message.into(),
        });
    }

    fn note(&mut self, message: impl Into<String>) {
        self.0.push(Finding {
            failure: false,
            message: message.into(),
        });
    }
}

/// Checks a bundle offline: every signature, the sequence, the
/// no-backdating rule, the meter and the settlement's amounts.
pub fn verify(bundle: &ProofBundle) -> Verdict {
    let mut findings = Findings::default();
    if bundle.format != FORMAT {
        findings.fail(format!(
            "format {} is not the format {FORMAT} this verifier knows",
            bundle.format
        ));
    }
    let terms = &bundle.session;
    let rules = TelemetryRules {
        requested: Point::new(terms.lat, terms.lng),
        geofence_radius_m: f64::from(terms.geofence_radius_meters),
        fresh_ms: bundle.rules.fresh_ms,
        max_accuracy_cm: bundle.rules.max_accuracy_cm,
    };
    let windows: Vec<Window> = bundle.windows.iter().map(|&w| w.into()).collect();
    for w in &windows {
        if !matches!(w.reason, WindowReason::Paused | WindowReason::NetworkError) {
            findings.fail(format!(
                "windows: a {:?} window is derived by the meter, not recorded",
                w.reason
            ));
        }
    }
    let (fixes, signed_by_device) = match bundle.evidence {
        EvidenceKind::SignedTelemetry => check_track(bundle, &windows, &mut findings),
        EvidenceKind::LocationHeartbeats => {
            findings.note(
                "the supplier is a tier-0 workspace: its positions are unsigned location \
                 heartbeats, taken as the server received them",
            );
            let fixes = bundle
                .locations
                .iter()
                .map(|l| Fix {
                    captured_ms: l.received_at_ms,
                    point: Point::new(l.lat, l.lng),
                    accuracy_cm: l.accuracy_cm,
                })
                .collect();
            (fixes, 0)
        }
        EvidenceKind::None => (Vec::new(), 0),
    };
    let out = meter::compute(MeterInput {
        started_ms: terms.started_at_ms,
        ended_ms: terms.ended_at_ms,
        max_duration_seconds: terms.max_duration_seconds,
        rate_micro_usdc: terms.rate_per_second_micro_usdc,
        fee_bps: bundle.meter.fee_bps,
        windows: &windows,
        fixes: &fixes,
        telemetry: Some(rules),
    });
    let recomputed = MeterDto::from(out.meter);
    compare_meters(&bundle.meter, &recomputed, &mut findings);
    let derived: Vec<ProofWindow> = out.windows.into_iter().map(ProofWindow::from).collect();
    if derived != bundle.derived_windows {
        findings.fail(format!(
            "derivedWindows: the bundle lists {} windows, the evidence gives {}",
            bundle.derived_windows.len(),
            derived.len()
        ));
    }
    if !bundle.meter_final {
        findings.note("the meter is not final yet: late samples may still change it");
    }
    check_settlement(bundle, &recomputed, &mut findings);
    Verdict {
        ok: findings.0.iter().all(|f| !f.failure),
        session_id: terms.id,
        samples_checked: bundle.track.len() as u64,
        samples_signed_by_device: signed_by_device,
        recomputed,
        findings: findings.0,
    }
}

/// Signatures, session and sequence of each sample; the fixes of those
/// that are the device's and count under the no-backdating rule.
fn check_track(
    bundle: &ProofBundle,
    windows: &[Window],
    findings: &mut Findings,
) -> (Vec<Fix>, u64) {
    let domain = &bundle.telemetry_domain;
    if domain.name != telemetry::DOMAIN_NAME || domain.version != telemetry::DOMAIN_VERSION {
        findings.fail(format!(
            "telemetryDomain: {:?} version {:?} is not the telemetry domain ({:?} version {:?})",
            domain.name,
            domain.version,
            telemetry::DOMAIN_NAME,
            telemetry::DOMAIN_VERSION
        ));
    }
    let signer = match bundle.signer.as_deref().map(str::parse::<Address>) {
        Some(Ok(address)) => Some(address),
        Some(Err(e)) => {
            findings.fail(format!("signer: {e}"));
            None
        }
        None => {
            findings.fail("signer: absent, although the evidence is signed telemetry");
            None
        }
    };
    let separator = telemetry::domain_separator(domain.chain_id);
    let device_outages: Vec<Outage> = bundle
        .device_outages
        .iter()
        .map(|o| Outage {
            opened_ms: o.opened_at_ms,
            closed_ms: o.closed_at_ms,
        })
        .collect();
    let outages = evidence::outages(&device_outages, windows);
    let session_bytes = *bundle.session.id.as_bytes();
    let mut fixes = Vec::with_capacity(bundle.track.len());
    let mut signed_by_device = 0u64;
    let mut previous: Option<u64> = None;
    for (index, proof) in bundle.track.iter().enumerate() {
        let sequence = proof.signed.sequence;
        let name = format!("sample {sequence} (track[{index}])");
        match previous {
            Some(p) if sequence <= p => findings.fail(format!(
                "{name}: sequence does not follow {p}: the track is out of order or repeats"
            )),
            Some(p) if sequence > p + 1 => {
                let missing = if sequence == p + 2 {
                    format!("sample {} is missing", p + 1)
                } else {
                    format!("samples {} to {} are missing", p + 1, sequence - 1)
                };
                findings.fail(format!("{missing} between {p} and {sequence}"));
            }
            _ => {}
        }
        previous = Some(previous.map_or(sequence, |p| p.max(sequence)));
        let (sample, signature) = match proof.decode() {
            Ok(decoded) => decoded,
            Err(e) => {
                findings.fail(format!("{name}: {e}"));
                continue;
            }
        };
        if sample.session_id != session_bytes {
            findings.fail(format!(
                "{name}: signed for another session ({})",
                proof.signed.session_id
            ));
            continue;
        }
        match (
            recover_prehash(&sample.digest_in(&separator), &signature),
            signer,
        ) {
            (Ok(recovered), Some(device)) if recovered == device => signed_by_device += 1,
            (Ok(recovered), Some(device)) => {
                findings.fail(format!(
                    "{name}: the signature recovers {}, not the device {}: the sample was altered \
                     or signed by another key",
                    recovered.to_checksum(),
                    device.to_checksum()
                ));
                continue;
            }
            (Ok(_), None) => continue,
            (Err(e), _) => {
                findings.fail(format!("{name}: the signature does not recover: {e}"));
                continue;
            }
        }
        let captured_ms = i64::try_from(sample.captured_at_ms).unwrap_or(i64::MAX);
        if evidence::admissible(
            captured_ms,
            proof.received_at_ms,
            &outages,
            bundle.rules.late_sample_bound_ms,
        ) {
            fixes.push(Fix {
                captured_ms,
                point: sample.point(),
                accuracy_cm: sample.accuracy_cm,
            });
        }
    }
    // The meter walks fixes in capture order.
    fixes.sort_by_key(|f| f.captured_ms);
    (fixes, signed_by_device)
}

fn compare_meters(stated: &MeterDto, recomputed: &MeterDto, findings: &mut Findings) {
    let pairs = [
        (
            "cleanSeconds",
            stated.clean_seconds,
            recomputed.clean_seconds,
        ),
        (
            "failedSeconds",
            stated.failed_seconds,
            recomputed.failed_seconds,
        ),
        (
            "chargedMicroUsdc",
            stated.charged_micro_usdc,
            recomputed.charged_micro_usdc,
        ),
        (
            "feeMicroUsdc",
            stated.fee_micro_usdc,
            recomputed.fee_micro_usdc,
        ),
        (
            "operatorEarnedMicroUsdc",
            stated.operator_earned_micro_usdc,
            recomputed.operator_earned_micro_usdc,
        ),
    ];
    for (field, says, gives) in pairs {
        if says != gives {
            findings.fail(format!(
                "meter.{field}: the bundle says {says}, the evidence gives {gives}"
            ));
        }
    }
}

fn check_settlement(bundle: &ProofBundle, recomputed: &MeterDto, findings: &mut Findings) {
    use crate::api::SettlementStatus::*;
    let Some(s) = &bundle.settlement else {
        findings.note("no settlement in the bundle");
        return;
    };
    if let (Some(to), Some(fee)) = (s.to_amount_micro_usdc, s.fee_amount_micro_usdc) {
        if to != recomputed.operator_earned_micro_usdc {
            findings.fail(format!(
                "settlement.toAmountMicroUsdc: {to} paid to the operator, the meter gives {}",
                recomputed.operator_earned_micro_usdc
            ));
        }
        if fee != recomputed.fee_micro_usdc {
            findings.fail(format!(
                "settlement.feeAmountMicroUsdc: {fee}, the meter gives {}",
                recomputed.fee_micro_usdc
            ));
        }
    }
    match (s.state, &s.tx_hash) {
        (Confirmed, Some(tx)) => findings.note(format!(
            "settled on chain {} in transaction {tx}{}",
            bundle.chain.as_ref().map_or(0, |c| c.chain_id),
            s.block_number
                .map(|b| format!(" (block {b})"))
                .unwrap_or_default()
        )),
        (Confirmed, None) => findings.fail("settlement: CONFIRMED without a transaction hash"),
        (NotRequired, _) if recomputed.charged_micro_usdc > 0 => findings.fail(format!(
            "settlement: NOT_REQUIRED although the meter charges {} µUSDC",
            recomputed.charged_micro_usdc
        )),
        (state, _) => findings.note(format!("settlement is {state:?}, not confirmed on chain")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SettlementStatus;
    use k256::ecdsa::SigningKey;

    const CHAIN: u64 = 31337;
    const START: i64 = 1_700_000_000_000;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).expect("key")
    }

    /// A 20-second session with one sample a second at the requested point,
    /// each received 200 ms after capture, and its meter as the server
    /// would state it.
    fn honest_bundle() -> ProofBundle {
        let id = Uuid::from_u128(0x1234);
        let here = Point::new(4.711, -74.072);
        let track: Vec<ProofSample> = (0..22u64)
            .map(|i| {
                let captured = START - 1000 + i as i64 * 1000;
                let sample = Sample::from_position(
                    Some(id),
                    100 + i,
                    captured as u64,
                    here,
                    3.0,
                    Source::Gps,
                )
                .expect("sample");
                ProofSample::encode(&sample, &sample.sign(&key(), CHAIN), captured + 200)
            })
            .collect();
        let mut bundle = ProofBundle {
            format: FORMAT,
            session: ProofTerms {
                id,
                state: SessionState::Ended,
                lat: here.lat,
                lng: here.lng,
                geofence_radius_meters: 150,
                max_duration_seconds: 600,
                rate_per_second_micro_usdc: 700,
                consumer_workspace_id: Uuid::from_u128(1),
                operator_workspace_id: Some(Uuid::from_u128(2)),
                operator_id: Some(Uuid::from_u128(3)),
                started_at_ms: START,
                ended_at_ms: START + 20_000,
            },
            evidence: EvidenceKind::SignedTelemetry,
            rules: ProofRules {
                fresh_ms: 3000,
                max_accuracy_cm: 5000,
                late_sample_bound_ms: 10_000,
            },
            telemetry_domain: TelemetryDomainDto {
                name: telemetry::DOMAIN_NAME.into(),
                version: telemetry::DOMAIN_VERSION.into(),
                chain_id: CHAIN,
            },
            signer: Some(Address::from_signing_key(&key()).to_checksum()),
            track,
            locations: Vec::new(),
            windows: vec![ProofWindow {
                reason: WindowReason::NetworkError,
                opened_at_ms: START + 5_000,
                closed_at_ms: Some(START + 7_000),
            }],
            device_outages: Vec::new(),
            meter: MeterDto::from(crate::meter::Meter::default()),
            derived_windows: Vec::new(),
            meter_final: true,
            settlement: None,
            chain: None,
            generated_at: "2026-12-07T00:00:00Z".into(),
        };
        bundle.meter = verify(&bundle).recomputed;
        bundle.meter.fee_bps = 1000;
        bundle.meter = verify(&bundle).recomputed;
        bundle.settlement = Some(SettlementDto {
            session_id: id,
            state: SettlementStatus::Confirmed,
            sequence: Some(1),
            to_amount_micro_usdc: Some(bundle.meter.operator_earned_micro_usdc),
            fee_amount_micro_usdc: Some(bundle.meter.fee_micro_usdc),
            tx_hash: Some(format!("0x{}", "ab".repeat(32))),
            block_number: Some(9),
            attempts: 1,
            last_error: None,
            updated_at: None,
        });
        bundle
    }

    fn failures(v: &Verdict) -> Vec<&str> {
        v.findings
            .iter()
            .filter(|f| f.failure)
            .map(|f| f.message.as_str())
            .collect()
    }

    #[test]
    fn an_honest_bundle_verifies_and_its_meter_is_the_servers() {
        let bundle = honest_bundle();
        let v = verify(&bundle);
        assert!(v.ok, "{:?}", v.findings);
        assert_eq!(v.samples_signed_by_device, 22);
        // 20 seconds, 2 without media.
        assert_eq!(v.recomputed.clean_seconds, 18);
        assert_eq!(v.recomputed.failed_seconds, 2);
        assert_eq!(v.recomputed.charged_micro_usdc, 18 * 700);
        assert_eq!(v.recomputed.fee_micro_usdc, 18 * 70);
    }

    #[test]
    fn an_altered_coordinate_fails_and_names_the_sample() {
        let mut bundle = honest_bundle();
        bundle.track[9].signed.lat_e7 += 1;
        let v = verify(&bundle);
        assert!(!v.ok);
        let f = failures(&v);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("sample 109 (track[9]): the signature recovers"),
            "{}",
            f[0]
        );
        assert_eq!(v.samples_signed_by_device, 21);
    }

    #[test]
    fn a_dropped_sample_fails_and_names_its_sequence() {
        let mut bundle = honest_bundle();
        bundle.track.remove(12);
        let v = verify(&bundle);
        assert_eq!(
            failures(&v),
            vec!["sample 112 is missing between 111 and 113"]
        );
        let mut bundle = honest_bundle();
        bundle.track.drain(3..6);
        // Three seconds without a fix go stale: the meter no longer holds
        // either, but the first thing said is what is missing.
        let v = verify(&bundle);
        assert_eq!(
            failures(&v)[0],
            "samples 103 to 105 are missing between 102 and 106"
        );
        assert!(
            failures(&v).contains(&"meter.cleanSeconds: the bundle says 18, the evidence gives 17")
        );
    }

    #[test]
    fn an_inflated_meter_or_payout_fails_by_field() {
        let mut bundle = honest_bundle();
        bundle.meter.clean_seconds += 1;
        bundle.meter.charged_micro_usdc += 700;
        let f = verify(&bundle);
        assert_eq!(
            failures(&f),
            vec![
                "meter.cleanSeconds: the bundle says 19, the evidence gives 18",
                "meter.chargedMicroUsdc: the bundle says 13300, the evidence gives 12600",
            ]
        );
        let mut bundle = honest_bundle();
        if let Some(s) = bundle.settlement.as_mut() {
            s.to_amount_micro_usdc = Some(s.to_amount_micro_usdc.unwrap_or(0) + 1);
        }
        assert!(failures(&verify(&bundle))[0].starts_with("settlement.toAmountMicroUsdc"));
    }

    #[test]
    fn a_backdated_sample_does_not_count_and_a_sample_of_another_key_fails() {
        // Samples 5..20 arrive a minute late, outside any outage: only the
        // first seconds are clean, and the stated meter no longer holds.
        let mut bundle = honest_bundle();
        for s in &mut bundle.track[5..] {
            s.received_at_ms += 60_000;
        }
        let v = verify(&bundle);
        assert!(v.recomputed.clean_seconds < 18);
        assert!(failures(&v)[0].starts_with("meter.cleanSeconds"));

        let mut bundle = honest_bundle();
        let other = SigningKey::from_slice(&[9u8; 32]).expect("key");
        let (sample, _) = bundle.track[4].decode().expect("decodes");
        bundle.track[4].signature = sample.sign(&other, CHAIN).to_string();
        let v = verify(&bundle);
        assert!(failures(&v)[0].contains("not the device"));
    }

    #[test]
    fn the_bundle_round_trips_through_json() {
        let bundle = honest_bundle();
        let text = serde_json::to_string(&bundle).expect("serialises");
        let back: ProofBundle = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, bundle);
        assert!(verify(&back).ok);
    }
}
