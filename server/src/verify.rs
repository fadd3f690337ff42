//! Telemetry signature verification: the server's hot path.
//!
//! A device's public key is parsed once; a batch of samples is verified on
//! every core. With the `libsecp256k1` feature (the default) the C library
//! does the work, else k256. Both refuse high-s signatures, so a valid
//! signature has exactly one encoding.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

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

/// Signatures a verifier thread claims at a time (about half a
/// millisecond of work): small enough that every core shares a batch,
/// large enough that claiming costs nothing.
const CHUNK: usize = 16;

/// The index of the first signature that does not verify, if any.
///
/// Every batch of the process goes to one queue served by one verifier
/// thread per core, which claim the oldest batch's signatures a chunk at
/// a time: a lone batch is spread over every core, concurrent batches never
/// run more verifying threads than there are cores (they would only take
/// turns, evicting each other's tables from the caches), and a core that
/// finishes its share moves on to the next batch instead of idling.
pub async fn first_invalid(key: DeviceKey, items: Vec<SignedDigest>) -> Option<usize> {
    if items.is_empty() {
        return None;
    }
    let pool = verifiers();
    if pool.threads.load(Ordering::Relaxed) == 0 {
        // No verifier thread could be started: verify here, off the async
        // workers, rather than wait for nobody.
        return tokio::task::spawn_blocking(move || {
            items.iter().position(|(d, s)| !key.verifies(d, s))
        })
        .await
        .unwrap_or(Some(0));
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    pool.submit(Batch {
        key,
        items,
        claimed: AtomicUsize::new(0),
        checked: AtomicUsize::new(0),
        first_bad: AtomicUsize::new(usize::MAX),
        reply: Mutex::new(Some(reply)),
    });
    // The sender is only dropped unsent if the process is unwinding.
    answer.await.unwrap_or(Some(0))
}

struct Batch {
    key: DeviceKey,
    items: Vec<SignedDigest>,
    /// Signatures handed to verifier threads so far.
    claimed: AtomicUsize,
    /// Signatures whose verification is finished (or skipped, past a bad one).
    checked: AtomicUsize,
    /// The lowest bad index found, `usize::MAX` while none is.
    first_bad: AtomicUsize,
    reply: Mutex<Option<tokio::sync::oneshot::Sender<Option<usize>>>>,
}

impl Batch {
    fn all_claimed(&self) -> bool {
        self.claimed.load(Ordering::Relaxed) >= self.items.len()
    }

    /// Verifies the chunk at `start`; the thread finishing the batch answers.
    fn check_chunk(&self, start: usize) {
        let end = (start + CHUNK).min(self.items.len());
        // Past a bad signature nothing changes the answer.
        if start < self.first_bad.load(Ordering::Acquire) {
            let bad = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.items[start..end]
                    .iter()
                    .position(|(d, s)| !self.key.verifies(d, s))
            }))
            // A chunk whose check failed to run is not a verified one.
            .unwrap_or(Some(0));
            if let Some(i) = bad {
                self.first_bad.fetch_min(start + i, Ordering::AcqRel);
            }
        }
        let done = end - start;
        if self.checked.fetch_add(done, Ordering::AcqRel) + done == self.items.len() {
            let first_bad = self.first_bad.load(Ordering::Acquire);
            let reply = self.reply.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(reply) = reply {
                // The caller may have gone (its request was cancelled).
                let _ = reply.send((first_bad != usize::MAX).then_some(first_bad));
            }
        }
    }
}

struct Verifiers {
    queue: Mutex<VecDeque<Arc<Batch>>>,
    work: Condvar,
    /// Verifier threads serving the queue.
    threads: AtomicUsize,
}

fn verifiers() -> &'static Verifiers {
    static VERIFIERS: OnceLock<&'static Verifiers> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let pool: &'static Verifiers = Box::leak(Box::new(Verifiers {
            queue: Mutex::new(VecDeque::new()),
            work: Condvar::new(),
            threads: AtomicUsize::new(0),
        }));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpus = own_cpus(cores);
        for i in 0..cores {
            let cpu = cpus.as_ref().map(|c| c[i]);
            let spawned = std::thread::Builder::new()
                .name(format!("lx-verify-{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        keep_to(cpu);
                    }
                    pool.serve()
                });
            match spawned {
                Ok(_) => {
                    pool.threads.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => tracing::error!(%err, "starting a signature verifier thread"),
            }
        }
        pool
    })
}

/// The CPUs of the process's affinity mask, when it names exactly
/// `threads` of them (the process has those CPUs to itself, as on a
/// dedicated machine or in a cpuset): then each verifier thread keeps to
/// one, and its caches keep the curve's tables between chunks rather than
/// following the thread from core to core (telemetry bench here: median
/// ratio 0.82 → 0.84 over 14 and 7 runs). A wider mask (a CPU quota, a
/// shared host) is left to the scheduler.
#[cfg(target_os = "linux")]
fn own_cpus(threads: usize) -> Option<Vec<usize>> {
    use nix::sched::{CpuSet, sched_getaffinity};
    let mask = sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&cpu| mask.is_set(cpu).unwrap_or(false))
        .collect();
    (cpus.len() == threads).then_some(cpus)
}

#[cfg(not(target_os = "linux"))]
fn own_cpus(_threads: usize) -> Option<Vec<usize>> {
    None
}

/// Keeps the calling thread to `cpu`; where it cannot, the thread runs
/// where the scheduler puts it, as it would have.
#[cfg(target_os = "linux")]
fn keep_to(cpu: usize) {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    let kept = set
        .set(cpu)
        .and_then(|()| sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
    if let Err(err) = kept {
        tracing::debug!(%err, cpu, "a verifier thread could not keep to its CPU");
    }
}

#[cfg(not(target_os = "linux"))]
fn keep_to(_cpu: usize) {}

impl Verifiers {
    fn submit(&self, batch: Batch) {
        self.lock().push_back(Arc::new(batch));
        self.work.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Batch>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serve(&self) {
        loop {
            let (batch, start) = {
                let mut queue = self.lock();
                loop {
                    while queue.front().is_some_and(|b| b.all_claimed()) {
                        queue.pop_front();
                    }
                    if let Some(batch) = queue.front() {
                        let start = batch.claimed.fetch_add(CHUNK, Ordering::Relaxed);
                        break (Arc::clone(batch), start);
                    }
                    queue = self.work.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
            };
            batch.check_chunk(start);
        }
    }
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

    #[tokio::test]
    async fn a_batch_reports_its_first_bad_signature() {
        let (key, mut items) = build_batch(40);
        assert_eq!(first_invalid(key.clone(), items.clone()).await, None);
        items[29].1[10] ^= 1;
        items[33].0[0] ^= 1;
        assert_eq!(first_invalid(key.clone(), items.clone()).await, Some(29));
        items[2].1[5] ^= 1;
        assert_eq!(first_invalid(key, items).await, Some(2));
    }

    #[tokio::test]
    async fn concurrent_batches_each_report_their_own_first_bad_signature() {
        let (key, items) = build_batch(64);
        let bad_at = [0, 5, 15, 16, 31, 63];
        let checks = bad_at.iter().map(|&bad| {
            let mut items = items.clone();
            items[bad].1[40] ^= 1;
            first_invalid(key.clone(), items)
        });
        let found = futures_util::future::join_all(checks).await;
        assert_eq!(found, bad_at.map(Some));
        assert_eq!(first_invalid(key, items).await, None);
        assert_eq!(first_invalid(build_batch(1).0, Vec::new()).await, None);
    }

    /// The CPUs `/proc` says a thread of this process may run on.
    #[cfg(target_os = "linux")]
    fn allowed_cpus(task: &std::path::Path) -> String {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn each_verifier_keeps_to_a_cpu_of_its_own_when_the_process_owns_as_many() {
        let (key, items) = build_batch(4);
        assert_eq!(first_invalid(key, items).await, None);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let process = allowed_cpus(std::path::Path::new("/proc/self"));
        let mut verifiers: Vec<(usize, String)> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .map(|t| t.unwrap().path())
            .filter_map(|t| {
                let name = std::fs::read_to_string(t.join("comm")).ok()?;
                let index = name.trim().strip_prefix("lx-verify-")?.parse().ok()?;
                Some((index, allowed_cpus(&t)))
            })
            .collect();
        verifiers.sort();
        assert_eq!(verifiers.len(), cores, "{verifiers:?}");
        match own_cpus(cores) {
            Some(cpus) => {
                let want: Vec<(usize, String)> = cpus
                    .iter()
                    .enumerate()
                    .map(|(i, cpu)| (i, cpu.to_string()))
                    .collect();
                assert_eq!(verifiers, want);
            }
            None => assert!(
                verifiers.iter().all(|(_, cpus)| *cpus == process),
                "{verifiers:?} with a wider mask {process}"
            ),
        }
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
