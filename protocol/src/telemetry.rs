//! The signed telemetry sample: a device's position at an instant, signed
//! by the device key with EIP-712 over integers (DESIGN section 7).
//!
//! ```text
//! domain  EIP712Domain(string name,string version,uint256 chainId)
//!         {name: "Luxxon Telemetry", version: "1", chainId}
//! type    Telemetry(bytes16 sessionId,uint64 sequence,uint64 capturedAtMs,
//!                   int32 latE7,int32 lngE7,uint32 accuracyCm,uint8 source)
//! ```
//!
//! The JSON form carries decimals (`lat = latE7 / 1e7`, `accuracyMeters =
//! accuracyCm / 100`, `capturedAt` with milliseconds); [`SampleJson::decode`]
//! recomputes the integers and refuses a sample whose decimals do not map to
//! exactly one integer encoding, so what was signed is what is stored.
//! Verification checks the signature against the device's known public key
//! (no recovery) and refuses high-s signatures.

use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::geo::Point;
use crate::time::{UnixMillis, format_millis, parse_canonical_millis, parse_millis};
use crate::wallet::{Signature65, keccak256, sign_prehash};

pub const DOMAIN_NAME: &str = "Luxxon Telemetry";
pub const DOMAIN_VERSION: &str = "1";
pub const DOMAIN_TYPE: &str = "EIP712Domain(string name,string version,uint256 chainId)";
pub const TELEMETRY_TYPE: &str = "Telemetry(bytes16 sessionId,uint64 sequence,uint64 capturedAtMs,int32 latE7,int32 lngE7,uint32 accuracyCm,uint8 source)";

/// Where a position came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Gps,
    Rtk,
    Network,
    Fixed,
    /// The flight controller's fused position, read over MAVLink.
    Mavlink,
}

impl Source {
    pub fn code(self) -> u8 {
        match self {
            Self::Gps => 0,
            Self::Rtk => 1,
            Self::Network => 2,
            Self::Fixed => 3,
            Self::Mavlink => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        [
            Self::Gps,
            Self::Rtk,
            Self::Network,
            Self::Fixed,
            Self::Mavlink,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// Exactly the integers that are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sample {
    /// The session UUID's 16 bytes; zero outside a session.
    pub session_id: [u8; 16],
    pub sequence: u64,
    pub captured_at_ms: u64,
    pub lat_e7: i32,
    pub lng_e7: i32,
    pub accuracy_cm: u32,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    #[error("{field}: {problem}")]
    Field {
        field: &'static str,
        problem: &'static str,
    },
    #[error("signature does not verify against the device key")]
    BadSignature,
}

fn field(field: &'static str, problem: &'static str) -> TelemetryError {
    TelemetryError::Field { field, problem }
}

impl Sample {
    /// Builds the integer encoding from decimal degrees and metres, rounding
    /// to the nearest 1e-7 degree and centimetre.
    pub fn from_position(
        session_id: Option<Uuid>,
        sequence: u64,
        captured_at_ms: u64,
        position: Point,
        accuracy_m: f64,
        source: Source,
    ) -> Result<Self, TelemetryError> {
        Ok(Self {
            session_id: session_id.map_or([0; 16], |u| *u.as_bytes()),
            sequence,
            captured_at_ms,
            lat_e7: degrees_to_e7(position.lat, 90.0)
                .ok_or(field("point.lat", "must be within ±90"))?,
            lng_e7: degrees_to_e7(position.lng, 180.0)
                .ok_or(field("point.lng", "must be within ±180"))?,
            accuracy_cm: metres_to_cm(accuracy_m)
                .ok_or(field("accuracyMeters", "must be 0 to 42,949,672.95"))?,
            source,
        })
    }

    pub fn session(&self) -> Option<Uuid> {
        (self.session_id != [0; 16]).then(|| Uuid::from_bytes(self.session_id))
    }

    pub fn point(&self) -> Point {
        Point::new(f64::from(self.lat_e7) / 1e7, f64::from(self.lng_e7) / 1e7)
    }

    pub fn accuracy_m(&self) -> f64 {
        f64::from(self.accuracy_cm) / 100.0
    }

    /// `hashStruct(Telemetry)`.
    pub fn struct_hash(&self) -> [u8; 32] {
        // The type hash is a constant of the encoding: hashed once.
        static TYPE_HASH: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let mut session = [0u8; 32];
        session[..16].copy_from_slice(&self.session_id);
        let words = [
            *TYPE_HASH.get_or_init(|| keccak256(TELEMETRY_TYPE.as_bytes())),
            session,
            word_u64(self.sequence),
            word_u64(self.captured_at_ms),
            word_i64(i64::from(self.lat_e7)),
            word_i64(i64::from(self.lng_e7)),
            word_u64(u64::from(self.accuracy_cm)),
            word_u64(u64::from(self.source.code())),
        ];
        keccak256(words.as_flattened())
    }

    /// The EIP-712 digest: `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct)`.
    pub fn digest(&self, chain_id: u64) -> [u8; 32] {
        self.digest_in(&domain_separator(chain_id))
    }

    /// The digest under a domain separator computed once for many samples.
    pub fn digest_in(&self, domain_separator: &[u8; 32]) -> [u8; 32] {
        let mut data = [0u8; 66];
        data[..2].copy_from_slice(&[0x19, 0x01]);
        data[2..34].copy_from_slice(domain_separator);
        data[34..].copy_from_slice(&self.struct_hash());
        keccak256(&data)
    }

    pub fn sign(&self, key: &SigningKey, chain_id: u64) -> Signature65 {
        sign_prehash(key, &self.digest(chain_id))
    }

    /// Checks `signature` against the device's public key.
    pub fn verify(
        &self,
        signature: &Signature65,
        chain_id: u64,
        key: &VerifyingKey,
    ) -> Result<(), TelemetryError> {
        let sig =
            Signature::from_slice(&signature.0[..64]).map_err(|_| TelemetryError::BadSignature)?;
        if bool::from(sig.s().is_high()) {
            return Err(TelemetryError::BadSignature);
        }
        key.verify_prehash(&self.digest(chain_id), &sig)
            .map_err(|_| TelemetryError::BadSignature)
    }
}

/// `keccak256(abi.encode(typeHash, keccak(name), keccak(version), chainId))`.
pub fn domain_separator(chain_id: u64) -> [u8; 32] {
    let mut enc = Vec::with_capacity(128);
    enc.extend_from_slice(&keccak256(DOMAIN_TYPE.as_bytes()));
    enc.extend_from_slice(&keccak256(DOMAIN_NAME.as_bytes()));
    enc.extend_from_slice(&keccak256(DOMAIN_VERSION.as_bytes()));
    enc.extend_from_slice(&word_u64(chain_id));
    keccak256(&enc)
}

fn word_u64(v: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&v.to_be_bytes());
    w
}

/// Two's complement, sign-extended to 256 bits, as `abi.encode` does for intN.
fn word_i64(v: i64) -> [u8; 32] {
    let mut w = if v < 0 { [0xff; 32] } else { [0u8; 32] };
    w[24..].copy_from_slice(&v.to_be_bytes());
    w
}

fn degrees_to_e7(deg: f64, limit: f64) -> Option<i32> {
    if !deg.is_finite() || deg.abs() > limit {
        return None;
    }
    Some((deg * 1e7).round() as i32)
}

fn metres_to_cm(m: f64) -> Option<u32> {
    let cm = (m * 100.0).round();
    (m.is_finite() && m >= 0.0 && cm <= f64::from(u32::MAX)).then_some(cm as u32)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PointDto {
    pub lat: f64,
    pub lng: f64,
}

/// The error detail of a replayed sample: the device's last stored sequence,
/// so that a device knows what the server already holds.
pub fn replayed_detail(last: u64) -> String {
    format!("telemetry:replayed:{last}")
}

/// The last stored sequence a [`replayed_detail`] names.
pub fn replayed_last(detail: &str) -> Option<u64> {
    detail.strip_prefix("telemetry:replayed:")?.parse().ok()
}

/// A sample as JSON (`POST /sessions/:id/telemetry`, MQTT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SampleJson {
    /// Absent outside a session; must match the session in the URL when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    pub captured_at: String,
    pub point: PointDto,
    pub accuracy_meters: f64,
    pub source: Source,
    pub sequence: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub signature: Signature65,
}

impl SampleJson {
    pub fn encode(sample: &Sample, signature: Signature65) -> Self {
        let p = sample.point();
        Self {
            session_id: sample.session(),
            captured_at: format_millis(i64::try_from(sample.captured_at_ms).unwrap_or(i64::MAX)),
            point: PointDto {
                lat: p.lat,
                lng: p.lng,
            },
            accuracy_meters: sample.accuracy_m(),
            source: sample.source,
            sequence: sample.sequence,
            signature,
        }
    }

    /// The signed integers, if the decimals are exactly an integer encoding.
    /// `session` is the session the sample is posted to (None: outside one).
    pub fn decode(&self, session: Option<Uuid>) -> Result<(Sample, Signature65), TelemetryError> {
        if self.session_id.is_some() && self.session_id != session {
            return Err(field(
                "sessionId",
                "does not match the session it was sent to",
            ));
        }
        let captured: UnixMillis = match parse_canonical_millis(&self.captured_at) {
            Some(ms) => ms,
            None => {
                let captured = parse_millis(&self.captured_at)
                    .ok_or(field("capturedAt", "must be an RFC 3339 time"))?;
                if format_millis(captured) != self.captured_at
                    && !same_instant_text(&self.captured_at, captured)
                {
                    return Err(field(
                        "capturedAt",
                        "must have at most millisecond precision",
                    ));
                }
                captured
            }
        };
        let captured_at_ms =
            u64::try_from(captured).map_err(|_| field("capturedAt", "must be after 1970"))?;
        let sample = Sample::from_position(
            session,
            self.sequence,
            captured_at_ms,
            Point::new(self.point.lat, self.point.lng),
            self.accuracy_meters,
            self.source,
        )?;
        let back = sample.point();
        if back.lat != self.point.lat {
            return Err(field("point.lat", "must have at most 7 decimals"));
        }
        if back.lng != self.point.lng {
            return Err(field("point.lng", "must have at most 7 decimals"));
        }
        if sample.accuracy_m() != self.accuracy_meters {
            return Err(field("accuracyMeters", "must have at most 2 decimals"));
        }
        Ok((sample, self.signature))
    }
}

/// Other spellings of the same millisecond (`+00:00`, fewer digits) are fine;
/// anything finer than a millisecond is not.
fn same_instant_text(text: &str, ms: UnixMillis) -> bool {
    let fraction = text
        .split('.')
        .nth(1)
        .map(|f| f.chars().take_while(char::is_ascii_digit).count());
    fraction.is_none_or(|digits| digits <= 3) && parse_millis(text) == Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn anvil_key() -> SigningKey {
        let bytes = hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
            .unwrap();
        SigningKey::from_slice(&bytes).unwrap()
    }

    fn build_sample() -> Sample {
        Sample {
            session_id: *Uuid::parse_str("b1e2f3a4-5b6c-4d8e-9f0a-1b2c3d4e5f6a")
                .unwrap()
                .as_bytes(),
            sequence: 42,
            captured_at_ms: 1_778_661_720_123,
            lat_e7: 47_110_000,
            lng_e7: -740_720_000,
            accuracy_cm: 400,
            source: Source::Gps,
        }
    }

    #[test]
    fn a_signature_verifies_with_the_signers_key_only() {
        let key = anvil_key();
        let s = build_sample();
        let sig = s.sign(&key, 31337);
        assert_eq!(s.verify(&sig, 31337, key.verifying_key()), Ok(()));
        assert_eq!(
            s.verify(&sig, 84532, key.verifying_key()),
            Err(TelemetryError::BadSignature)
        );
        let other = SigningKey::from_slice(&[7u8; 32]).unwrap();
        assert_eq!(
            s.verify(&sig, 31337, other.verifying_key()),
            Err(TelemetryError::BadSignature)
        );
        let moved = Sample {
            lat_e7: s.lat_e7 + 1,
            ..s
        };
        assert_eq!(
            moved.verify(&sig, 31337, key.verifying_key()),
            Err(TelemetryError::BadSignature)
        );
    }

    #[test]
    fn the_signer_is_recoverable_from_the_digest() {
        let key = anvil_key();
        let s = build_sample();
        let sig = s.sign(&key, 31337);
        let signer = crate::wallet::recover_prehash(&s.digest(31337), &sig).unwrap();
        assert_eq!(
            signer.to_checksum(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
    }

    #[test]
    fn negative_coordinates_are_sign_extended() {
        assert_eq!(word_i64(-1), [0xff; 32]);
        let w = word_i64(-740_720_000);
        assert!(w[..24].iter().all(|&b| b == 0xff));
    }

    #[test]
    fn json_carries_exact_decimals_and_decodes_back() {
        let key = anvil_key();
        let s = build_sample();
        let json = SampleJson::encode(&s, s.sign(&key, 1));
        assert_eq!(json.point.lat, 4.711);
        assert_eq!(json.point.lng, -74.072);
        assert_eq!(json.accuracy_meters, 4.0);
        assert_eq!(json.captured_at, "2026-05-13T08:42:00.123Z");
        let text = serde_json::to_string(&json).unwrap();
        let back: SampleJson = serde_json::from_str(&text).unwrap();
        assert_eq!(back.decode(s.session()).unwrap().0, s);
    }

    #[test]
    fn decimals_that_were_not_signed_are_refused() {
        let s = build_sample();
        let mut json = SampleJson::encode(&s, Signature65([0; 65]));
        json.point.lat = 4.711_000_01;
        assert_eq!(
            json.decode(s.session()),
            Err(field("point.lat", "must have at most 7 decimals"))
        );
        let mut json = SampleJson::encode(&s, Signature65([0; 65]));
        json.accuracy_meters = 4.001;
        assert!(json.decode(s.session()).is_err());
        let mut json = SampleJson::encode(&s, Signature65([0; 65]));
        json.captured_at = "2026-05-13T08:42:00.1234Z".into();
        assert!(json.decode(s.session()).is_err());
        let json = SampleJson::encode(&s, Signature65([0; 65]));
        assert!(
            json.decode(Some(Uuid::nil())).is_err(),
            "posted to another session"
        );
    }

    proptest! {
        #[test]
        fn any_encoded_sample_round_trips_through_json(
            lat in -900_000_000i32..=900_000_000,
            lng in -1_800_000_000i32..=1_800_000_000,
            acc in 0u32..10_000_000,
            seq in any::<u64>(),
            at in 0u64..4_102_444_800_000,
            src in 0u8..4,
        ) {
            let s = Sample { session_id: [3; 16], sequence: seq, captured_at_ms: at, lat_e7: lat, lng_e7: lng, accuracy_cm: acc, source: Source::from_code(src).unwrap() };
            let json = SampleJson::encode(&s, Signature65([0; 65]));
            let text = serde_json::to_string(&json).unwrap();
            let back: SampleJson = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back.decode(s.session()).unwrap().0, s);
        }
    }
}
