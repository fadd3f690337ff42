//! Telemetry signature verification: the server's hot path.
//!
//! A device's public key is parsed once; a batch of samples is verified on
//! every core. With the `libsecp256k1` feature (the default) the C library
//! does the work, else k256. Both refuse high-s signatures, so a valid
//! signature has exactly one encoding.

use std::sync::atomic::{AtomicUsize, Ordering};

use k256::ecdsa::VerifyingKey;

#[derive(Debug, Clone)]
pub struct DeviceKey {
    #[cfg(feature = "libsecp256k1")]
    key: secp256k1::PublicKey,
    #[cfg(not(feature = "libsecp256k1"))]
    key: VerifyingKey,
}

impl DeviceKey {
    /// From the SEC1 bytes stored at enrollment.
    pub fn from_sec1(bytes: &[u8]) -> Option<Self> {
        #[cfg(feature = "libsecp256k1")]
        let key = secp256k1::PublicKey::from_slice(bytes).ok()?;
        #[cfg(not(feature = "libsecp256k1"))]
        let key = VerifyingKey::from_sec1_bytes(bytes).ok()?;
        Some(Self { key })
    }

    /// Whether `signature` (r ‖ s ‖ v) signs `digest` with this key.
    pub fn verifies(&self, digest: &[u8; 32], signature: &[u8; 65]) -> bool {
        #[cfg(feature = "libsecp256k1")]
        {
            let Ok(sig) = secp256k1::ecdsa::Signature::from_compact(&signature[..64]) else {
                return false;
            };
            let msg = secp256k1::Message::from_digest(*digest);
            // libsecp256k1 verifies only normalized (low-s) signatures.
            context().verify_ecdsa(&msg, &sig, &self.key).is_ok()
        }
        #[cfg(not(feature = "libsecp256k1"))]
        {
            verify_k256(&self.key, digest, signature)
        }
    }
}

#[cfg(feature = "libsecp256k1")]
fn context() -> &'static secp256k1::Secp256k1<secp256k1::VerifyOnly> {
    static CONTEXT: std::sync::OnceLock<secp256k1::Secp256k1<secp256k1::VerifyOnly>> =
        std::sync::OnceLock::new();
    CONTEXT.get_or_init(secp256k1::Secp256k1::verification_only)
}

/// Pure-Rust verification with k256, low-s only.
pub fn verify_k256(key: &VerifyingKey, digest: &[u8; 32], signature: &[u8; 65]) -> bool {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use k256::elliptic_curve::scalar::IsHigh;
    let Ok(sig) = k256::ecdsa::Signature::from_slice(&signature[..64]) else {
        return false;
    };
    !bool::from(sig.s().is_high()) && key.verify_prehash(digest, &sig).is_ok()
}

/// A digest and the signature (r ‖ s ‖ v) over it.
pub type SignedDigest = ([u8; 32], [u8; 65]);

/// Below this many signatures a batch is verified on the calling thread.
const PARALLEL_FROM: usize = 8;

/// Threads verifying right now, across every batch of the process.
static VERIFYING: AtomicUsize = AtomicUsize::new(0);

/// Counts threads in [`VERIFYING`] while it lives.
struct Verifying(usize);

impl Verifying {
    fn enter(threads: usize) -> Self {
        VERIFYING.fetch_add(threads, Ordering::AcqRel);
        Self(threads)
    }
}

impl Drop for Verifying {
    fn drop(&mut self) {
        VERIFYING.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// The index of the first signature that does not verify, if any; call it
/// from a blocking context. A batch is split over the cores no other batch
/// is verifying on: with every core busy it stays on the calling thread, so
/// that concurrent batches do not spawn more threads than there are cores
/// (they would only take turns, and evict each other's tables from the
/// caches).
pub fn first_invalid(key: &DeviceKey, items: &[SignedDigest]) -> Option<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let me = Verifying::enter(1);
    let spare = cores.saturating_sub(VERIFYING.load(Ordering::Acquire));
    if items.len() < PARALLEL_FROM || spare == 0 {
        return items.iter().position(|(d, s)| !key.verifies(d, s));
    }
    let _helpers = Verifying::enter(spare);
    let chunk = items.len().div_ceil(spare + 1);
    let mut parts = items.chunks(chunk).enumerate();
    let (_, mine) = parts.next()?;
    let found = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .map(|(i, part)| {
                scope.spawn(move || {
                    part.iter()
                        .position(|(d, s)| !key.verifies(d, s))
                        .map(|p| i * chunk + p)
                })
            })
            .collect();
        let here = mine.iter().position(|(d, s)| !key.verifies(d, s));
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .chain(here)
            .min()
    });
    drop(me);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;
    use lx_protocol::wallet::sign_prehash;

    fn build_batch(n: usize) -> (DeviceKey, Vec<SignedDigest>) {
        let key = SigningKey::from_slice(&[5u8; 32]).unwrap();
        let device =
            DeviceKey::from_sec1(key.verifying_key().to_encoded_point(true).as_bytes()).unwrap();
        let items = (0..n)
            .map(|i| {
                let digest = lx_protocol::wallet::keccak256(&i.to_be_bytes());
                (digest, sign_prehash(&key, &digest).0)
            })
            .collect();
        (device, items)
    }

    #[test]
    fn a_batch_reports_its_first_bad_signature() {
        let (key, mut items) = build_batch(40);
        assert_eq!(first_invalid(&key, &items), None);
        items[29].1[10] ^= 1;
        items[33].0[0] ^= 1;
        assert_eq!(first_invalid(&key, &items), Some(29));
    }

    #[test]
    fn concurrent_batches_each_report_their_own_first_bad_signature() {
        let (key, items) = build_batch(64);
        let bad_at = [0, 5, 31, 32, 63];
        std::thread::scope(|scope| {
            for &bad in &bad_at {
                let (key, mut items) = (key.clone(), items.clone());
                items[bad].1[40] ^= 1;
                scope.spawn(move || assert_eq!(first_invalid(&key, &items), Some(bad)));
            }
        });
        assert_eq!(first_invalid(&key, &items), None);
    }

    #[test]
    fn a_high_s_twin_of_a_valid_signature_is_refused() {
        let (key, items) = build_batch(1);
        let (digest, mut sig) = items[0];
        // s' = n - s describes the same signature in its high-s form.
        let parsed = k256::ecdsa::Signature::from_slice(&sig[..64]).unwrap();
        let high = -*parsed.s().as_ref();
        sig[32..64].copy_from_slice(&high.to_bytes());
        assert!(key.verifies(&digest, &items[0].1));
        assert!(!key.verifies(&digest, &sig));
    }
}
