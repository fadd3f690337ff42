//! The telemetry signature (DESIGN section 7) against an independent EIP-712
//! implementation: foundry's `cast`, the binary of the npm package
//! `@foundry-rs/cast` pinned in `tools/npm/`.
//!
//! - `data/telemetry_vectors.json` holds typed data signed by `cast wallet
//!   sign --data` (how, in its `comment`). Our signer must produce the same
//!   bytes (RFC 6979 makes ECDSA deterministic on both sides), our verifier
//!   must accept cast's signatures, and any one-bit change must not verify.
//! - [`cast_verifies_our_signatures`] runs the real cast on random samples
//!   signed here. It finds cast through `LX_CAST` (set by `cargo xtask test`)
//!   or in `tools/npm/node_modules`, and fails when neither exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use k256::ecdsa::SigningKey;
use lx_protocol::telemetry::{
    DOMAIN_NAME, DOMAIN_TYPE, DOMAIN_VERSION, Sample, Source, TELEMETRY_TYPE, TelemetryError,
    domain_separator,
};
use lx_protocol::wallet::{Address, Signature65, recover_prehash};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const VECTORS: &str = include_str!("data/telemetry_vectors.json");

/// One vector of `data/telemetry_vectors.json`.
struct Vector {
    name: String,
    key: SigningKey,
    address: String,
    chain_id: u64,
    typed_data: Value,
    domain_separator: [u8; 32],
    struct_hash: [u8; 32],
    digest: [u8; 32],
    signature: Signature65,
}

fn vectors() -> Vec<Vector> {
    let file: Value = serde_json::from_str(VECTORS).expect("telemetry_vectors.json is JSON");
    let vectors = file["vectors"].as_array().expect("a `vectors` array");
    vectors
        .iter()
        .map(|v| {
            let text = |field: &str| {
                v[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("vector field {field} is a string"))
                    .to_owned()
            };
            Vector {
                name: text("name"),
                key: SigningKey::from_slice(&hex32(&text("privateKey"))).expect("a valid key"),
                address: text("address"),
                chain_id: v["chainId"].as_u64().expect("chainId is a u64"),
                typed_data: v["typedData"].clone(),
                domain_separator: hex32(&text("domainSeparator")),
                struct_hash: hex32(&text("structHash")),
                digest: hex32(&text("digest")),
                signature: text("signature").parse().expect("a 65-byte signature"),
            }
        })
        .collect()
}

fn hex32(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim_start_matches("0x"), &mut out).expect("32 bytes of hex");
    out
}

/// An integer of typed data: a JSON number or a decimal string, as
/// EIP-712 JSON allows (and as cast accepts).
fn integer(value: &Value) -> i128 {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .expect("an integer"),
        Value::String(s) => s.parse().expect("a decimal integer"),
        other => panic!("not an integer: {other}"),
    }
}

/// `Name(type name,…)` from a typed-data `types` entry.
fn type_string(types: &Value, name: &str) -> String {
    let members: Vec<String> = types[name]
        .as_array()
        .expect("a typed-data struct")
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["type"].as_str().expect("a member type"),
                m["name"].as_str().expect("a member name")
            )
        })
        .collect();
    format!("{name}({})", members.join(","))
}

/// The sample a typed-data document describes, after checking that the
/// document is our domain and our type (so the vectors test this protocol).
fn sample_from_typed_data(typed: &Value) -> (Sample, u64) {
    assert_eq!(typed["primaryType"], "Telemetry");
    assert_eq!(type_string(&typed["types"], "EIP712Domain"), DOMAIN_TYPE);
    assert_eq!(type_string(&typed["types"], "Telemetry"), TELEMETRY_TYPE);
    assert_eq!(typed["domain"]["name"], DOMAIN_NAME);
    assert_eq!(typed["domain"]["version"], DOMAIN_VERSION);
    let chain_id = u64::try_from(integer(&typed["domain"]["chainId"])).expect("chainId fits a u64");
    let m = &typed["message"];
    let mut session_id = [0u8; 16];
    let session_hex = m["sessionId"].as_str().expect("sessionId is hex");
    hex::decode_to_slice(
        session_hex
            .strip_prefix("0x")
            .expect("sessionId starts with 0x"),
        &mut session_id,
    )
    .expect("sessionId is 16 bytes");
    let sample = Sample {
        session_id,
        sequence: u64::try_from(integer(&m["sequence"])).expect("sequence is a uint64"),
        captured_at_ms: u64::try_from(integer(&m["capturedAtMs"]))
            .expect("capturedAtMs is a uint64"),
        lat_e7: i32::try_from(integer(&m["latE7"])).expect("latE7 is an int32"),
        lng_e7: i32::try_from(integer(&m["lngE7"])).expect("lngE7 is an int32"),
        accuracy_cm: u32::try_from(integer(&m["accuracyCm"])).expect("accuracyCm is a uint32"),
        source: Source::from_code(u8::try_from(integer(&m["source"])).expect("source is a uint8"))
            .expect("source is 0..=3"),
    };
    (sample, chain_id)
}

/// The typed-data JSON of `sample`, in the vectors' layout (uint64 as
/// decimal strings, the other integers as numbers).
fn typed_data(sample: &Sample, chain_id: u64) -> Value {
    json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "Telemetry": [
                {"name": "sessionId", "type": "bytes16"},
                {"name": "sequence", "type": "uint64"},
                {"name": "capturedAtMs", "type": "uint64"},
                {"name": "latE7", "type": "int32"},
                {"name": "lngE7", "type": "int32"},
                {"name": "accuracyCm", "type": "uint32"},
                {"name": "source", "type": "uint8"},
            ],
        },
        "primaryType": "Telemetry",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id.to_string()},
        "message": {
            "sessionId": format!("0x{}", hex::encode(sample.session_id)),
            "sequence": sample.sequence.to_string(),
            "capturedAtMs": sample.captured_at_ms.to_string(),
            "latE7": sample.lat_e7,
            "lngE7": sample.lng_e7,
            "accuracyCm": sample.accuracy_cm,
            "source": sample.source.code(),
        },
    })
}

/// Every sample that differs from `s` in exactly one bit of one signed field.
fn one_bit_changes(s: &Sample) -> Vec<(String, Sample)> {
    let mut out = Vec::new();
    for bit in 0..128 {
        let mut session_id = s.session_id;
        session_id[bit / 8] ^= 1 << (bit % 8);
        out.push((format!("sessionId bit {bit}"), Sample { session_id, ..*s }));
    }
    for bit in 0..64 {
        out.push((
            format!("sequence bit {bit}"),
            Sample {
                sequence: s.sequence ^ (1 << bit),
                ..*s
            },
        ));
        out.push((
            format!("capturedAtMs bit {bit}"),
            Sample {
                captured_at_ms: s.captured_at_ms ^ (1 << bit),
                ..*s
            },
        ));
    }
    for bit in 0..32 {
        out.push((
            format!("latE7 bit {bit}"),
            Sample {
                lat_e7: s.lat_e7 ^ (1 << bit),
                ..*s
            },
        ));
        out.push((
            format!("lngE7 bit {bit}"),
            Sample {
                lng_e7: s.lng_e7 ^ (1 << bit),
                ..*s
            },
        ));
        out.push((
            format!("accuracyCm bit {bit}"),
            Sample {
                accuracy_cm: s.accuracy_cm ^ (1 << bit),
                ..*s
            },
        ));
    }
    // `source` is a uint8 restricted to 0..=3: its two low bits.
    for bit in 0..2 {
        let source = Source::from_code(s.source.code() ^ (1 << bit)).expect("codes 0..=3");
        out.push((format!("source bit {bit}"), Sample { source, ..*s }));
    }
    out
}

#[test]
fn the_vectors_cover_what_the_acceptance_asks_for() {
    let vectors = vectors();
    assert!(vectors.len() >= 6, "{} vectors", vectors.len());
    let samples: Vec<(Sample, u64)> = vectors
        .iter()
        .map(|v| sample_from_typed_data(&v.typed_data))
        .collect();
    for source in [Source::Gps, Source::Rtk, Source::Network, Source::Fixed] {
        assert!(
            samples.iter().any(|(s, _)| s.source == source),
            "{source:?}"
        );
    }
    for chain in [31337, 84532] {
        assert!(samples.iter().any(|&(_, c)| c == chain), "chain {chain}");
    }
    assert!(samples.iter().any(|(s, _)| s.session_id == [0; 16]));
    assert!(samples.iter().any(|(s, _)| s.lat_e7 > 0 && s.lng_e7 > 0));
    assert!(samples.iter().any(|(s, _)| s.lat_e7 < 0 && s.lng_e7 < 0));
    assert!(samples.iter().any(|(s, _)| s.sequence == u64::MAX));
    assert!(samples.iter().any(|(s, _)| s.accuracy_cm == u32::MAX));
    assert!(
        samples
            .iter()
            .any(|(s, _)| s.lat_e7 == i32::MAX && s.lng_e7 == i32::MIN)
    );
    let keys: std::collections::HashSet<_> = vectors.iter().map(|v| v.address.clone()).collect();
    assert!(keys.len() >= 2, "more than one key");
    let vs: std::collections::HashSet<_> = vectors.iter().map(|v| v.signature.0[64]).collect();
    assert_eq!(vs.len(), 2, "both recovery ids (v = 27 and 28) occur");
}

#[test]
fn our_hashes_are_the_ones_cast_computed() {
    for v in vectors() {
        let (sample, chain_id) = sample_from_typed_data(&v.typed_data);
        assert_eq!(chain_id, v.chain_id, "{}", v.name);
        assert_eq!(domain_separator(chain_id), v.domain_separator, "{}", v.name);
        assert_eq!(sample.struct_hash(), v.struct_hash, "{}", v.name);
        assert_eq!(sample.digest(chain_id), v.digest, "{}", v.name);
    }
}

#[test]
fn we_sign_byte_for_byte_what_cast_signed() {
    for v in vectors() {
        assert_eq!(
            Address::from_signing_key(&v.key).to_checksum(),
            v.address,
            "{}: the key's address",
            v.name
        );
        let (sample, chain_id) = sample_from_typed_data(&v.typed_data);
        let ours = sample.sign(&v.key, chain_id);
        assert_eq!(
            ours.0, v.signature.0,
            "{}: ours {ours}, cast {}",
            v.name, v.signature
        );
    }
}

#[test]
fn casts_signatures_verify_here_and_only_for_what_was_signed() {
    for v in vectors() {
        let (sample, chain_id) = sample_from_typed_data(&v.typed_data);
        let key = v.key.verifying_key();
        assert_eq!(
            sample.verify(&v.signature, chain_id, key),
            Ok(()),
            "{}",
            v.name
        );
        assert_eq!(
            recover_prehash(&sample.digest(chain_id), &v.signature)
                .unwrap()
                .to_checksum(),
            v.address,
            "{}: recovered signer",
            v.name
        );
        for (change, changed) in one_bit_changes(&sample) {
            assert_ne!(changed, sample);
            assert_eq!(
                changed.verify(&v.signature, chain_id, key),
                Err(TelemetryError::BadSignature),
                "{}: {change} still verifies",
                v.name
            );
        }
        for bit in 0..64 {
            assert_eq!(
                sample.verify(&v.signature, chain_id ^ (1 << bit), key),
                Err(TelemetryError::BadSignature),
                "{}: chainId bit {bit} still verifies",
                v.name
            );
        }
        for bit in 0..512 {
            let mut sig = v.signature;
            sig.0[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                sample.verify(&sig, chain_id, key),
                Err(TelemetryError::BadSignature),
                "{}: signature bit {bit} flipped still verifies",
                v.name
            );
        }
        let other = SigningKey::from_slice(&[7u8; 32]).unwrap();
        assert_eq!(
            sample.verify(&v.signature, chain_id, other.verifying_key()),
            Err(TelemetryError::BadSignature),
            "{}: another key",
            v.name
        );
    }
}

/// The cast binary: `LX_CAST`, else the one `cargo xtask test` installs.
fn cast_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LX_CAST") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "LX_CAST={} is not a file; run `cargo xtask test`, which installs cast and sets LX_CAST",
            path.display()
        );
        return path;
    }
    let platform = match std::env::consts::ARCH {
        "aarch64" => "linux-arm64",
        _ => "linux-amd64",
    };
    // Cargo's directory at run time before the one compiled in: a test
    // binary can be shared by clones of one target directory.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = manifest.parent().expect("the workspace root");
    let installed = root
        .join("tools/npm/node_modules/@foundry-rs")
        .join(format!("cast-{platform}"))
        .join("bin/cast");
    assert!(
        installed.is_file(),
        "foundry's cast is needed to check our signatures against an independent EIP-712 \
         implementation, and neither LX_CAST is set nor {} exists: run `cargo xtask test` \
         (it installs cast from the npm registry into tools/npm and sets LX_CAST)",
        installed.display()
    );
    installed
}

/// Runs cast, returning (success, stdout, stderr).
fn cast(binary: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", binary.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

fn random_sample(rng: &mut StdRng) -> Sample {
    let mut session_id = [0u8; 16];
    if rng.gen_bool(0.8) {
        rng.fill(&mut session_id);
    }
    let (lat_e7, lng_e7) = if rng.gen_bool(0.8) {
        (
            rng.gen_range(-900_000_000..=900_000_000),
            rng.gen_range(-1_800_000_000..=1_800_000_000),
        )
    } else {
        (rng.r#gen(), rng.r#gen())
    };
    Sample {
        session_id,
        sequence: rng.r#gen(),
        captured_at_ms: rng.gen_range(0..4_102_444_800_000),
        lat_e7,
        lng_e7,
        accuracy_cm: rng.r#gen(),
        source: Source::from_code(rng.gen_range(0..4)).expect("codes 0..=3"),
    }
}

/// Our signatures, checked by the real cast: `cast wallet verify --data`
/// accepts each for the signer's address (and refuses it for a changed
/// sample), and `cast wallet sign --data` with the same key gives the same
/// bytes.
#[test]
fn cast_verifies_our_signatures() {
    let cast_bin = cast_binary();
    let (ok, version, err) = cast(&cast_bin, &["--version"]);
    assert!(ok, "{} --version failed: {err}", cast_bin.display());
    eprintln!(
        "using {}: {}",
        cast_bin.display(),
        version.lines().next().unwrap_or("")
    );
    let seed: u64 = rand::thread_rng().r#gen();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..20 {
        let key = SigningKey::random(&mut rng);
        let address = Address::from_signing_key(&key).to_checksum();
        let sample = random_sample(&mut rng);
        let chain_id = match i % 3 {
            0 => 31337,
            1 => 84532,
            _ => rng.r#gen(),
        };
        let signature = sample.sign(&key, chain_id).to_string();
        let json = typed_data(&sample, chain_id).to_string();
        let context = format!("seed {seed}, sample {i}: {json}, signature {signature}");

        let (ok, out, err) = cast(
            &cast_bin,
            &[
                "wallet",
                "verify",
                "--address",
                &address,
                "--data",
                &json,
                &signature,
            ],
        );
        assert!(ok, "cast refused our signature ({out} {err}); {context}");

        let private_key = format!("0x{}", hex::encode(key.to_bytes()));
        let (ok, theirs, err) = cast(
            &cast_bin,
            &[
                "wallet",
                "sign",
                "--private-key",
                &private_key,
                "--data",
                &json,
            ],
        );
        assert!(ok, "cast wallet sign failed: {err}; {context}");
        assert_eq!(theirs, signature, "cast signed differently; {context}");

        let moved = Sample {
            lat_e7: sample.lat_e7.wrapping_add(1),
            ..sample
        };
        let moved_json = typed_data(&moved, chain_id).to_string();
        let (ok, out, _) = cast(
            &cast_bin,
            &[
                "wallet",
                "verify",
                "--address",
                &address,
                "--data",
                &moved_json,
                &signature,
            ],
        );
        assert!(
            !ok,
            "cast accepted our signature for a changed sample ({out}); {context}"
        );
    }
}
