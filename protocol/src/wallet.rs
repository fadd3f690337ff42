//! Ethereum wallet signatures: addresses (EIP-55), `personal_sign`
//! messages (EIP-191), recoverable secp256k1 signatures with EIP-2 low-s
//! enforcement, and Sign-In with Ethereum messages (EIP-4361).
//!
//! Everything here is pure computation over its inputs. Parsing functions
//! return a [`WalletError`] naming what is wrong; nothing panics on any input.

use std::fmt;
use std::str::FromStr;

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Keccak256};

/// Why a wallet address, signature or Sign-In with Ethereum message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("bad Ethereum address: {0}")]
    BadAddress(String),
    #[error("bad Ethereum signature: {0}")]
    BadSignature(String),
    #[error("bad Sign-In with Ethereum message: {0}")]
    BadSiweMessage(String),
}

/// Keccak-256 (the pre-standard SHA-3 variant Ethereum uses) of `data`.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

/// A 20-byte Ethereum account address: the last 20 bytes of the Keccak-256
/// hash of the uncompressed public key (without its `0x04` prefix).
///
/// Displays, debugs and serializes as its EIP-55 mixed-case checksum form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The address controlled by the private key behind `key`.
    pub fn from_verifying_key(key: &VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        // An uncompressed SEC1 point is 0x04 || x || y; the address hashes x || y.
        let coordinates = point.as_bytes().get(1..).unwrap_or_default();
        let hash = keccak256(coordinates);
        let mut address = [0u8; 20];
        address.copy_from_slice(&hash[12..]);
        Self(address)
    }

    /// The address of `key`'s public key.
    pub fn from_signing_key(key: &SigningKey) -> Self {
        Self::from_verifying_key(key.verifying_key())
    }

    /// EIP-55 mixed-case checksum encoding, `0x` prefixed.
    pub fn to_checksum(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        // Hex digit i is upper-cased when nibble i of the hash is 8 or more.
        for (pair, hash_byte) in lower.as_bytes().chunks(2).zip(hash) {
            for (digit, nibble) in pair.iter().zip([hash_byte >> 4, hash_byte & 0x0f]) {
                let digit = char::from(*digit);
                out.push(if nibble >= 8 {
                    digit.to_ascii_uppercase()
                } else {
                    digit
                });
            }
        }
        out
    }

    /// `0x` followed by 40 lowercase hex digits.
    pub fn to_lower_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

impl FromStr for Address {
    type Err = WalletError;

    /// Accepts `0x` and 40 hex digits. All-lowercase and all-uppercase digits
    /// carry no checksum and are accepted as they are; mixed case must be the
    /// exact EIP-55 checksum encoding.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text
            .strip_prefix("0x")
            .ok_or_else(|| WalletError::BadAddress("must start with 0x".to_owned()))?;
        if digits.len() != 40 {
            return Err(WalletError::BadAddress(format!(
                "expected 40 hex digits after 0x, found {} characters",
                digits.chars().count()
            )));
        }
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(digits, &mut bytes)
            .map_err(|err| WalletError::BadAddress(format!("not hexadecimal: {err}")))?;
        let address = Self(bytes);
        let has_lower = digits.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = digits.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper && address.to_checksum() != text {
            return Err(WalletError::BadAddress(
                "mixed-case address does not match its EIP-55 checksum (mistyped?)".to_owned(),
            ));
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_checksum())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------

/// A recoverable secp256k1 signature as wallets hand it over: `r || s || v`,
/// 32 + 32 + 1 bytes.
///
/// `v` is 27 or 28 (the recovery id plus 27); 0 and 1 are accepted as the same
/// ids. Displays and serializes as `0x` and 130 lowercase hex digits, `v` as
/// 27/28.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature65(pub [u8; 65]);

impl Signature65 {
    /// The raw bytes with `v` written as 27/28 when it was stored as 0/1.
    fn canonical_bytes(&self) -> [u8; 65] {
        let mut bytes = self.0;
        if bytes[64] <= 1 {
            bytes[64] += 27;
        }
        bytes
    }
}

/// Each byte's value as a hex digit (either case), or `NOT_HEX`.
const HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};
const NOT_HEX: u8 = 0xff;

/// Decodes `digits` into `out` (half as long) by table: every sample's
/// signature passes here on the server's ingest path. False if a character
/// is not a hex digit or the lengths disagree.
fn decode_hex(digits: &[u8], out: &mut [u8]) -> bool {
    if digits.len() != out.len() * 2 {
        return false;
    }
    let mut seen = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUES[usize::from(pair[0])],
            HEX_VALUES[usize::from(pair[1])],
        );
        seen |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    // Only NOT_HEX sets the high bits of a value.
    seen & 0xf0 == 0
}

impl FromStr for Signature65 {
    type Err = WalletError;

    /// Accepts `0x` and 130 hex digits (either case); `v` may be 0/1 or
    /// 27/28 and is stored as 27/28.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text
            .strip_prefix("0x")
            .ok_or_else(|| WalletError::BadSignature("must start with 0x".to_owned()))?;
        if digits.len() != 130 {
            return Err(WalletError::BadSignature(format!(
                "expected 130 hex digits (r, s, v) after 0x, found {} characters",
                digits.chars().count()
            )));
        }
        let mut bytes = [0u8; 65];
        if !decode_hex(digits.as_bytes(), &mut bytes) {
            // The slow decoder, for its account of what is wrong.
            hex::decode_to_slice(digits, &mut bytes)
                .map_err(|err| WalletError::BadSignature(format!("not hexadecimal: {err}")))?;
        }
        match bytes[64] {
            0 | 1 => bytes[64] += 27,
            27 | 28 => {}
            v => return Err(bad_v(v)),
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for Signature65 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.canonical_bytes()))
    }
}

impl fmt::Debug for Signature65 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature65(0x{})", hex::encode(self.0))
    }
}

impl Serialize for Signature65 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Signature65 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn bad_v(v: u8) -> WalletError {
    WalletError::BadSignature(format!("v must be 27 or 28 (or 0 or 1), got {v}"))
}

/// The EIP-191 (version `0x45`, `personal_sign`) hash of `message`:
/// `keccak256("\x19Ethereum Signed Message:\n" || decimal byte length || message)`.
pub fn personal_message_hash(message: &[u8]) -> [u8; 32] {
    let length = message.len().to_string();
    let mut hasher = Keccak256::new();
    hasher.update(b"\x19Ethereum Signed Message:\n");
    hasher.update(length.as_bytes());
    hasher.update(message);
    hasher.finalize().into()
}

/// Signs a 32-byte hash with RFC 6979 deterministic nonces. The result has a
/// low `s` (EIP-2) and `v = 27 + recovery id`.
///
/// Signing fails only if the nonce derivation yields `r = 0` or `s = 0`, which
/// has probability about 2^-256; in that case the all-zero signature is
/// returned, which [`recover_prehash`] refuses, so a failure can never verify.
pub fn sign_prehash(key: &SigningKey, hash: &[u8; 32]) -> Signature65 {
    let Ok((signature, recovery_id)) = key.sign_prehash_recoverable(hash) else {
        return Signature65([0; 65]);
    };
    // k256 already normalizes; kept so the guarantee does not rest on that.
    let (signature, recovery_id) = match signature.normalize_s() {
        Some(low) => (
            low,
            RecoveryId::new(!recovery_id.is_y_odd(), recovery_id.is_x_reduced()),
        ),
        None => (signature, recovery_id),
    };
    let mut bytes = [0u8; 65];
    bytes[..64].copy_from_slice(&signature.to_bytes());
    bytes[64] = 27 + recovery_id.to_byte();
    Signature65(bytes)
}

/// The address whose key made `sig` over `hash`.
///
/// Refuses `v` other than 27/28 (or 0/1), `r` or `s` outside `1..n`, and
/// high-`s` signatures (EIP-2), so a valid signature cannot be rewritten into
/// a second valid one. Recovery ids 2 and 3 (an `r` that overflowed the group
/// order, probability about 2^-128) are not representable in Ethereum's `v`
/// and are refused too.
pub fn recover_prehash(hash: &[u8; 32], sig: &Signature65) -> Result<Address, WalletError> {
    recover_key_prehash(hash, sig).map(|key| Address::from_verifying_key(&key))
}

/// The public key that made `sig` over `hash`, with the checks of
/// [`recover_prehash`]. A server keeps it to verify later signatures of the
/// same key without recovery.
pub fn recover_key_prehash(
    hash: &[u8; 32],
    sig: &Signature65,
) -> Result<VerifyingKey, WalletError> {
    let is_y_odd = match sig.0[64] {
        0 | 27 => false,
        1 | 28 => true,
        v => return Err(bad_v(v)),
    };
    let signature = Signature::from_slice(&sig.0[..64]).map_err(|_| {
        WalletError::BadSignature(
            "r and s must both be non-zero and below the secp256k1 group order".to_owned(),
        )
    })?;
    if bool::from(signature.s().is_high()) {
        return Err(WalletError::BadSignature(
            "s is in the upper half of the group order; EIP-2 allows only low-s signatures"
                .to_owned(),
        ));
    }
    let recovery_id = RecoveryId::new(is_y_odd, false);
    VerifyingKey::recover_from_prehash(hash, &signature, recovery_id).map_err(|_| {
        WalletError::BadSignature("no public key recovers from this signature and hash".to_owned())
    })
}

/// `personal_sign`: signs the EIP-191 hash of `message`.
pub fn sign_personal(key: &SigningKey, message: &[u8]) -> Signature65 {
    sign_prehash(key, &personal_message_hash(message))
}

/// The address that `personal_sign`ed `message` to produce `sig`.
pub fn recover_personal(message: &[u8], sig: &Signature65) -> Result<Address, WalletError> {
    recover_prehash(&personal_message_hash(message), sig)
}

// ---------------------------------------------------------------------------
// Sign-In with Ethereum (EIP-4361)
// ---------------------------------------------------------------------------

const SIWE_HEADER_SUFFIX: &str = " wants you to sign in with your Ethereum account:";

/// An EIP-4361 Sign-In with Ethereum message.
///
/// `domain` holds everything before ` wants you to sign in…`, which is the
/// RFC 3986 authority, optionally preceded by `scheme://` as the current ERC
/// text allows. The date-times are kept as the RFC 3339 text that was signed.
///
/// [`SiweMessage::to_message`] writes whatever the fields hold;
/// [`SiweMessage::parse`] checks the text against the ERC's ABNF, so a message
/// built from out-of-grammar fields does not parse back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiweMessage {
    pub domain: String,
    pub address: Address,
    pub statement: Option<String>,
    pub uri: String,
    /// Must be `"1"`.
    pub version: String,
    pub chain_id: u64,
    pub nonce: String,
    pub issued_at: String,
    pub expiration_time: Option<String>,
    pub not_before: Option<String>,
    pub request_id: Option<String>,
    pub resources: Vec<String>,
}

impl SiweMessage {
    /// The exact text the wallet signs (EIP-4361 ABNF): lines separated by a
    /// bare LF, no trailing newline. Without a statement the address is
    /// followed by two empty lines; with one, by an empty line, the statement
    /// and another empty line.
    pub fn to_message(&self) -> String {
        let mut out = String::with_capacity(512);
        out.push_str(&self.domain);
        out.push_str(SIWE_HEADER_SUFFIX);
        out.push('\n');
        out.push_str(&self.address.to_checksum());
        out.push_str("\n\n");
        if let Some(statement) = &self.statement {
            out.push_str(statement);
            out.push('\n');
        }
        out.push('\n');
        out.push_str("URI: ");
        out.push_str(&self.uri);
        out.push_str("\nVersion: ");
        out.push_str(&self.version);
        out.push_str("\nChain ID: ");
        out.push_str(&self.chain_id.to_string());
        out.push_str("\nNonce: ");
        out.push_str(&self.nonce);
        out.push_str("\nIssued At: ");
        out.push_str(&self.issued_at);
        if let Some(expiration_time) = &self.expiration_time {
            out.push_str("\nExpiration Time: ");
            out.push_str(expiration_time);
        }
        if let Some(not_before) = &self.not_before {
            out.push_str("\nNot Before: ");
            out.push_str(not_before);
        }
        if let Some(request_id) = &self.request_id {
            out.push_str("\nRequest ID: ");
            out.push_str(request_id);
        }
        if !self.resources.is_empty() {
            out.push_str("\nResources:");
            for resource in &self.resources {
                out.push_str("\n- ");
                out.push_str(resource);
            }
        }
        out
    }

    /// Parses and validates the text of a SIWE message against the EIP-4361
    /// ABNF: fields in the prescribed order, LF line ends, an EIP-55
    /// checksummed address, version `1`, a decimal chain id, a nonce of at
    /// least 8 ASCII letters and digits, RFC 3339 date-times, and the RFC 3986
    /// character sets for domain, statement, URIs and request id (URIs are
    /// checked for a scheme and legal characters, not parsed in full).
    pub fn parse(text: &str) -> Result<Self, WalletError> {
        if text.contains('\r') {
            return Err(siwe_error(
                "contains a carriage return; lines must be separated by LF alone",
            ));
        }
        let mut lines = Lines::new(text);

        let (number, header) = lines.expect("the header line")?;
        let domain = header.strip_suffix(SIWE_HEADER_SUFFIX).ok_or_else(|| {
            siwe_error(format!(
                "line {number}: expected `<domain>{SIWE_HEADER_SUFFIX}`"
            ))
        })?;
        check_domain(domain).map_err(|why| siwe_error(format!("line {number}: domain {why}")))?;

        let (number, address_text) = lines.expect("the address line")?;
        let address: Address = address_text
            .parse()
            .map_err(|err| siwe_error(format!("line {number}: {err}")))?;
        if address.to_checksum() != address_text {
            return Err(siwe_error(format!(
                "line {number}: the address must be written in its EIP-55 checksum form"
            )));
        }

        lines.expect_blank("after the address")?;
        // Without a statement a second blank line follows at once; with one,
        // the statement line (which may be empty) and then a blank line.
        let statement = match lines.peek_pair() {
            (Some(""), Some("")) => {
                lines.skip();
                lines.skip();
                Some(String::new())
            }
            (Some(""), _) => {
                lines.skip();
                None
            }
            _ => {
                let (number, statement) = lines.expect("the statement or an empty line")?;
                if statement.starts_with("URI: ") && lines.peek() != Some("") {
                    return Err(siwe_error(format!(
                        "line {number}: expected an empty line before `URI: ` (without a \
                         statement, two empty lines follow the address)"
                    )));
                }
                check_statement(statement)
                    .map_err(|why| siwe_error(format!("line {number}: statement {why}")))?;
                lines.expect_blank("after the statement")?;
                Some(statement.to_owned())
            }
        };

        let (number, uri) = lines.field("URI: ")?;
        check_uri(uri).map_err(|why| siwe_error(format!("line {number}: URI {why}")))?;

        let (number, version) = lines.field("Version: ")?;
        if version != "1" {
            return Err(siwe_error(format!("line {number}: version must be 1")));
        }

        let (number, chain_id) = lines.field("Chain ID: ")?;
        let chain_id = parse_chain_id(chain_id)
            .map_err(|why| siwe_error(format!("line {number}: chain id {why}")))?;

        let (number, nonce) = lines.field("Nonce: ")?;
        if nonce.len() < 8 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(siwe_error(format!(
                "line {number}: nonce must be at least 8 ASCII letters or digits"
            )));
        }

        let (number, issued_at) = lines.field("Issued At: ")?;
        check_date_time(issued_at, number, "issued-at")?;

        let expiration_time = lines.optional_field("Expiration Time: ");
        if let Some((number, value)) = expiration_time {
            check_date_time(value, number, "expiration time")?;
        }
        let not_before = lines.optional_field("Not Before: ");
        if let Some((number, value)) = not_before {
            check_date_time(value, number, "not-before")?;
        }
        let request_id = lines.optional_field("Request ID: ");
        if let Some((number, value)) = request_id {
            check_request_id(value)
                .map_err(|why| siwe_error(format!("line {number}: request id {why}")))?;
        }
        let mut resources = Vec::new();
        if lines.peek() == Some("Resources:") {
            lines.skip();
            while let Some((number, line)) = lines.take() {
                let resource = line.strip_prefix("- ").ok_or_else(|| {
                    siwe_error(format!(
                        "line {number}: a resource line must start with `- `"
                    ))
                })?;
                check_uri(resource)
                    .map_err(|why| siwe_error(format!("line {number}: resource URI {why}")))?;
                resources.push(resource.to_owned());
            }
        }
        if let Some((number, _)) = lines.take() {
            return Err(siwe_error(format!(
                "line {number}: unexpected line; after `Issued At` only `Expiration Time`, \
                 `Not Before`, `Request ID` and `Resources` may follow, in that order, \
                 and the message must not end with a newline"
            )));
        }

        Ok(Self {
            domain: domain.to_owned(),
            address,
            statement,
            uri: uri.to_owned(),
            version: version.to_owned(),
            chain_id,
            nonce: nonce.to_owned(),
            issued_at: issued_at.to_owned(),
            expiration_time: expiration_time.map(|(_, value)| value.to_owned()),
            not_before: not_before.map(|(_, value)| value.to_owned()),
            request_id: request_id.map(|(_, value)| value.to_owned()),
            resources,
        })
    }
}

fn siwe_error(why: impl Into<String>) -> WalletError {
    WalletError::BadSiweMessage(why.into())
}

/// The lines of a SIWE message with their 1-based numbers, for error messages.
struct Lines<'a> {
    lines: Vec<&'a str>,
    next: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            lines: text.split('\n').collect(),
            next: 0,
        }
    }

    fn peek(&self) -> Option<&'a str> {
        self.lines.get(self.next).copied()
    }

    fn peek_pair(&self) -> (Option<&'a str>, Option<&'a str>) {
        (self.peek(), self.lines.get(self.next + 1).copied())
    }

    fn skip(&mut self) {
        self.next += 1;
    }

    fn take(&mut self) -> Option<(usize, &'a str)> {
        let line = self.peek()?;
        self.next += 1;
        Some((self.next, line))
    }

    fn expect(&mut self, what: &str) -> Result<(usize, &'a str), WalletError> {
        let number = self.next + 1;
        self.take()
            .ok_or_else(|| siwe_error(format!("line {number}: message ends where {what} belongs")))
    }

    fn expect_blank(&mut self, context: &str) -> Result<(), WalletError> {
        let (number, line) = self.expect(&format!("an empty line {context}"))?;
        if line.is_empty() {
            Ok(())
        } else {
            Err(siwe_error(format!(
                "line {number}: expected an empty line {context}"
            )))
        }
    }

    fn field(&mut self, tag: &str) -> Result<(usize, &'a str), WalletError> {
        let (number, line) = self.expect(&format!("`{tag}`"))?;
        line.strip_prefix(tag)
            .map(|value| (number, value))
            .ok_or_else(|| siwe_error(format!("line {number}: expected `{tag}`")))
    }

    fn optional_field(&mut self, tag: &str) -> Option<(usize, &'a str)> {
        let value = self.peek()?.strip_prefix(tag)?;
        self.skip();
        Some((self.next, value))
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

fn is_gen_delim(b: u8) -> bool {
    matches!(b, b':' | b'/' | b'?' | b'#' | b'[' | b']' | b'@')
}

/// Whether `text` consists of bytes `allowed` accepts and, if `percent` is
/// set, RFC 3986 percent-encodings (`%` and two hex digits).
fn chars_ok(text: &str, percent: bool, allowed: impl Fn(u8) -> bool) -> Result<(), String> {
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if percent && b == b'%' {
            let encoded = matches!(
                (bytes.next(), bytes.next()),
                (Some(hi), Some(lo)) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit()
            );
            if !encoded {
                return Err("has a `%` not followed by two hex digits".to_owned());
            }
        } else if !allowed(b) {
            return Err(if b.is_ascii_graphic() {
                format!(
                    "contains the character `{}`, which is not allowed there",
                    char::from(b)
                )
            } else if b.is_ascii() {
                format!("contains the control or space byte 0x{b:02x}")
            } else {
                "contains a non-ASCII character".to_owned()
            });
        }
    }
    Ok(())
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn check_scheme(scheme: &str) -> Result<(), String> {
    let mut bytes = scheme.bytes();
    let starts_alpha = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    if starts_alpha && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        Ok(())
    } else {
        Err("has no valid scheme (a letter, then letters, digits, `+`, `-` or `.`)".to_owned())
    }
}

/// `[ scheme "://" ] authority`, the authority checked for its character set.
fn check_domain(domain: &str) -> Result<(), String> {
    let authority = match domain.split_once("://") {
        Some((scheme, authority)) => {
            check_scheme(scheme)?;
            authority
        }
        None => domain,
    };
    if authority.is_empty() {
        return Err("is empty".to_owned());
    }
    chars_ok(authority, true, |b| {
        is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@' | b'[' | b']')
    })
}

/// `statement = *( reserved / unreserved / " " )`.
fn check_statement(statement: &str) -> Result<(), String> {
    chars_ok(statement, false, |b| {
        is_unreserved(b) || is_sub_delim(b) || is_gen_delim(b) || b == b' '
    })
}

/// An RFC 3986 URI: a scheme, `:`, then URI characters only.
fn check_uri(uri: &str) -> Result<(), String> {
    let (scheme, rest) = uri.split_once(':').ok_or("has no `scheme:` prefix")?;
    check_scheme(scheme)?;
    chars_ok(rest, true, |b| {
        is_unreserved(b) || is_sub_delim(b) || is_gen_delim(b)
    })
}

/// `request-id = *pchar`.
fn check_request_id(request_id: &str) -> Result<(), String> {
    chars_ok(request_id, true, |b| {
        is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@')
    })
}

/// `chain-id = 1*DIGIT`, within `u64`.
fn parse_chain_id(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a decimal number".to_owned());
    }
    text.parse()
        .map_err(|_| "does not fit in 64 bits".to_owned())
}

fn check_date_time(text: &str, number: usize, field: &str) -> Result<(), WalletError> {
    use ::time::{OffsetDateTime, format_description::well_known::Rfc3339};
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|_| ())
        .map_err(|err| {
            siwe_error(format!(
                "line {number}: {field} is not an RFC 3339 date-time ({err})"
            ))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ANVIL_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const ANVIL_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    fn key(hex_key: &str) -> SigningKey {
        SigningKey::from_slice(&hex::decode(hex_key).unwrap()).unwrap()
    }

    fn address(text: &str) -> Address {
        text.parse().unwrap()
    }

    fn minimal_siwe() -> SiweMessage {
        SiweMessage {
            domain: "example.com".to_owned(),
            address: address("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"),
            statement: None,
            uri: "https://example.com/login".to_owned(),
            version: "1".to_owned(),
            chain_id: 1,
            nonce: "32891756".to_owned(),
            issued_at: "2021-09-30T16:25:24Z".to_owned(),
            expiration_time: None,
            not_before: None,
            request_id: None,
            resources: Vec::new(),
        }
    }

    fn full_siwe() -> SiweMessage {
        SiweMessage {
            statement: Some(
                "I accept the ExampleOrg Terms of Service: https://example.com/tos".to_owned(),
            ),
            expiration_time: Some("2021-10-01T16:25:24.123+02:00".to_owned()),
            not_before: Some("2021-09-30T16:00:00Z".to_owned()),
            request_id: Some("req-42:a@b".to_owned()),
            resources: vec![
                "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/".to_owned(),
                "https://example.com/my-web2-claim.json".to_owned(),
            ],
            ..minimal_siwe()
        }
    }

    fn siwe_problem(text: &str) -> String {
        match SiweMessage::parse(text) {
            Err(WalletError::BadSiweMessage(why)) => why,
            other => panic!("expected BadSiweMessage, got {other:?}"),
        }
    }

    // --- keccak and EIP-55 ----------------------------------------------------

    #[test]
    fn keccak256_matches_the_known_empty_input_digest() {
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn eip55_vectors_parse_and_print_back_unchanged() {
        for text in [
            // Mixed case.
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
            // All caps.
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
            // All lower.
            "0xde709f2102306220921060314715629080e2fb77",
            "0x27b1fdb04752bbc536007a920d24acb045561c26",
        ] {
            let parsed = address(text);
            assert_eq!(parsed.to_checksum(), text);
            assert_eq!(parsed.to_string(), text);
            assert_eq!(format!("{parsed:?}"), text);
            assert_eq!(parsed.to_lower_hex(), text.to_ascii_lowercase());
        }
    }

    #[test]
    fn all_lowercase_and_all_uppercase_addresses_are_accepted_without_checksum() {
        let checksummed = address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
        let lower = address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed");
        let upper = address("0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED");
        assert_eq!(lower, checksummed);
        assert_eq!(upper, checksummed);
    }

    #[test]
    fn a_mixed_case_address_with_a_wrong_checksum_is_refused() {
        // Last letter of a vector flipped to lower case.
        let err = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"
            .parse::<Address>()
            .unwrap_err();
        assert!(
            matches!(&err, WalletError::BadAddress(why) if why.contains("checksum")),
            "{err}"
        );
        let err = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
            .replace('B', "b")
            .parse::<Address>()
            .unwrap_err();
        assert!(matches!(err, WalletError::BadAddress(_)));
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_reason() {
        let cases = [
            ("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x"),
            ("0X5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x"),
            ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe", "40 hex digits"),
            (
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00",
                "40 hex digits",
            ),
            ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg", "hexadecimal"),
            (
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA\u{e9}",
                "hexadecimal",
            ),
            ("", "0x"),
        ];
        for (text, reason) in cases {
            match text.parse::<Address>() {
                Err(WalletError::BadAddress(why)) => assert!(why.contains(reason), "{text}: {why}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn addresses_serialize_as_checksummed_strings_and_deserialize_with_reasons() {
        let parsed = address("0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB");
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(json, "\"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB\"");
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), parsed);
        let lower =
            serde_json::from_str::<Address>("\"0xdbf03b407c01e7cd3cbea99509d93f8dddc8c6fb\"");
        assert_eq!(lower.unwrap(), parsed);
        let err = serde_json::from_str::<Address>("\"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6Fb\"")
            .unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(serde_json::from_str::<Address>("42").is_err());
    }

    // --- keys and signatures ---------------------------------------------------

    #[test]
    fn the_anvil_default_key_has_the_well_known_address() {
        let signing = key(ANVIL_KEY);
        assert_eq!(
            Address::from_signing_key(&signing).to_string(),
            ANVIL_ADDRESS
        );
        assert_eq!(
            Address::from_verifying_key(signing.verifying_key()),
            address(ANVIL_ADDRESS)
        );
    }

    #[test]
    fn personal_sign_matches_the_web3js_documentation_vector() {
        // web3.eth.accounts.sign('Some data', '0x4c08…2318') in the web3.js docs.
        let signing = key("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
        let expected_address = address("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
        assert_eq!(Address::from_signing_key(&signing), expected_address);
        assert_eq!(
            hex::encode(personal_message_hash(b"Some data")),
            "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
        );
        let expected: Signature65 =
            "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd\
             6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c"
                .parse()
                .unwrap();
        // Both sides use RFC 6979 nonces, so the signature is reproduced exactly.
        assert_eq!(sign_personal(&signing, b"Some data"), expected);
        assert_eq!(
            recover_personal(b"Some data", &expected).unwrap(),
            expected_address
        );
    }

    #[test]
    fn a_tampered_message_recovers_a_different_address_or_fails() {
        let signing = key(ANVIL_KEY);
        let signature = sign_personal(&signing, b"pay 10 to alice");
        assert_eq!(
            recover_personal(b"pay 10 to alice", &signature).unwrap(),
            address(ANVIL_ADDRESS)
        );
        match recover_personal(b"pay 99 to alice", &signature) {
            Ok(other) => assert_ne!(other, address(ANVIL_ADDRESS)),
            Err(err) => assert!(matches!(err, WalletError::BadSignature(_))),
        }
    }

    #[test]
    fn a_high_s_signature_is_rejected_even_though_it_is_mathematically_valid() {
        let signing = key(ANVIL_KEY);
        let hash = personal_message_hash(b"malleable?");
        let low = sign_prehash(&signing, &hash);
        let parsed = Signature::from_slice(&low.0[..64]).unwrap();
        assert!(
            !bool::from(parsed.s().is_high()),
            "signing must produce low s"
        );

        // (r, n - s) with the flipped parity is the classic malleated twin.
        let high_s = -*parsed.s();
        let twin = Signature::from_scalars(parsed.r().to_bytes(), high_s.to_bytes()).unwrap();
        assert!(bool::from(twin.s().is_high()));
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(&twin.to_bytes());
        bytes[64] = if low.0[64] == 27 { 28 } else { 27 };
        let malleated = Signature65(bytes);

        // The twin does recover the signer once normalized back, which shows
        // the refusal below is about EIP-2 and not about garbage input.
        let normalized = twin.normalize_s().unwrap();
        let recovered = VerifyingKey::recover_from_prehash(
            &hash,
            &normalized,
            RecoveryId::from_byte(low.0[64] - 27).unwrap(),
        )
        .unwrap();
        assert_eq!(
            Address::from_verifying_key(&recovered),
            address(ANVIL_ADDRESS)
        );

        match recover_prehash(&hash, &malleated) {
            Err(WalletError::BadSignature(why)) => assert!(why.contains("EIP-2"), "{why}"),
            other => panic!("high-s signature accepted: {other:?}"),
        }
    }

    #[test]
    fn bad_v_and_out_of_range_r_or_s_are_rejected() {
        let signing = key(ANVIL_KEY);
        let hash = personal_message_hash(b"v");
        let good = sign_prehash(&signing, &hash);
        for v in [2, 26, 29, 30, 35, 255] {
            let mut bytes = good.0;
            bytes[64] = v;
            match recover_prehash(&hash, &Signature65(bytes)) {
                Err(WalletError::BadSignature(why)) => assert!(why.contains("v must be"), "{why}"),
                other => panic!("v = {v} accepted: {other:?}"),
            }
        }
        let mut zero_r = good.0;
        zero_r[..32].fill(0);
        assert!(matches!(
            recover_prehash(&hash, &Signature65(zero_r)),
            Err(WalletError::BadSignature(_))
        ));
        let mut huge_s = good.0;
        huge_s[32..64].fill(0xff);
        assert!(matches!(
            recover_prehash(&hash, &Signature65(huge_s)),
            Err(WalletError::BadSignature(_))
        ));
        assert!(recover_prehash(&hash, &Signature65([0; 65])).is_err());
    }

    #[test]
    fn v_given_as_zero_or_one_means_the_same_as_27_or_28() {
        let signing = key(ANVIL_KEY);
        let hash = personal_message_hash(b"legacy v");
        let signature = sign_prehash(&signing, &hash);
        let mut raw = signature.0;
        raw[64] -= 27;
        let raw = Signature65(raw);
        assert_eq!(
            recover_prehash(&hash, &raw).unwrap(),
            address(ANVIL_ADDRESS)
        );
        // Display writes 27/28 and parsing 0/1 stores 27/28.
        assert_eq!(raw.to_string(), signature.to_string());
        let zero_one_text = format!("0x{}", hex::encode(raw.0));
        assert_eq!(zero_one_text.parse::<Signature65>().unwrap(), signature);
    }

    #[test]
    fn signatures_print_parse_and_serialize_as_lowercase_hex() {
        let signature = sign_personal(&key(ANVIL_KEY), b"hello");
        let text = signature.to_string();
        assert_eq!(text.len(), 132);
        assert_eq!(text, text.to_ascii_lowercase());
        assert!(text.ends_with("1b") || text.ends_with("1c"));
        assert_eq!(text.parse::<Signature65>().unwrap(), signature);
        assert_eq!(
            text.to_ascii_uppercase()
                .replacen("0X", "0x", 1)
                .parse::<Signature65>()
                .unwrap(),
            signature
        );
        let json = serde_json::to_string(&signature).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<Signature65>(&json).unwrap(),
            signature
        );
        let err = serde_json::from_str::<Signature65>("\"0x1234\"").unwrap_err();
        assert!(err.to_string().contains("130 hex digits"), "{err}");
    }

    #[test]
    fn malformed_signature_text_is_refused_with_the_reason() {
        let good = sign_personal(&key(ANVIL_KEY), b"x").to_string();
        let cases = [
            (good.trim_start_matches("0x").to_owned(), "0x"),
            (good[..131].to_owned(), "130 hex digits"),
            (format!("{good}00"), "130 hex digits"),
            (format!("{}zz", &good[..130]), "hexadecimal"),
            (format!("{}1d", &good[..130]), "v must be"),
            (format!("{}02", &good[..130]), "v must be"),
        ];
        for (text, reason) in cases {
            match text.parse::<Signature65>() {
                Err(WalletError::BadSignature(why)) => {
                    assert!(why.contains(reason), "{text}: {why}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_freshly_generated_key_recovers_to_its_own_address() {
        let signing = SigningKey::random(&mut rand::thread_rng());
        let message = b"lx sign-in";
        let signature = sign_personal(&signing, message);
        assert_eq!(
            recover_personal(message, &signature).unwrap(),
            Address::from_signing_key(&signing)
        );
    }

    fn any_signing_key() -> impl Strategy<Value = SigningKey> {
        any::<[u8; 32]>().prop_filter_map("not a valid secp256k1 scalar", |bytes| {
            SigningKey::from_slice(&bytes).ok()
        })
    }

    proptest! {
        #[test]
        fn sign_then_recover_returns_the_signer_for_random_keys_and_messages(
            signing in any_signing_key(),
            message in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let signature = sign_personal(&signing, &message);
            let s = Signature::from_slice(&signature.0[..64]).unwrap().s();
            prop_assert!(!bool::from(s.is_high()));
            prop_assert!(matches!(signature.0[64], 27 | 28));
            prop_assert_eq!(
                recover_personal(&message, &signature).unwrap(),
                Address::from_signing_key(&signing)
            );
            let reparsed: Signature65 = signature.to_string().parse().unwrap();
            prop_assert_eq!(reparsed, signature);
        }

        #[test]
        fn recovery_never_panics_on_arbitrary_bytes(
            hash in any::<[u8; 32]>(),
            sig in proptest::collection::vec(any::<u8>(), 65),
        ) {
            let mut bytes = [0u8; 65];
            bytes.copy_from_slice(&sig);
            let _ = recover_prehash(&hash, &Signature65(bytes));
        }

        #[test]
        fn the_table_hex_decoder_agrees_with_the_hex_crate(
            text in proptest::collection::vec(
                prop_oneof![
                    8 => proptest::sample::select(b"0123456789abcdefABCDEF".to_vec()),
                    1 => any::<u8>(),
                ],
                9..12,
            ),
        ) {
            let mut fast = [0u8; 5];
            let mut slow = [0u8; 5];
            let decoded = decode_hex(&text, &mut fast);
            let reference = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| hex::decode_to_slice(t, &mut slow).ok());
            prop_assert_eq!(decoded, reference.is_some());
            if decoded {
                prop_assert_eq!(fast, slow);
            }
        }

        #[test]
        fn address_text_round_trips_through_checksum_and_lowercase(bytes in any::<[u8; 20]>()) {
            let addr = Address(bytes);
            prop_assert_eq!(addr.to_checksum().parse::<Address>().unwrap(), addr);
            prop_assert_eq!(addr.to_lower_hex().parse::<Address>().unwrap(), addr);
            prop_assert_eq!(addr.to_checksum().to_ascii_lowercase(), addr.to_lower_hex());
        }

        #[test]
        fn parsers_never_panic_on_arbitrary_text(text in "\\PC{0,200}") {
            let _ = text.parse::<Address>();
            let _ = text.parse::<Signature65>();
            let _ = SiweMessage::parse(&text);
        }
    }

    // --- Sign-In with Ethereum ---------------------------------------------------

    #[test]
    fn siwe_to_message_matches_the_erc_example_exactly() {
        let expected = "example.com wants you to sign in with your Ethereum account:\n\
            0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n\
            \n\
            I accept the ExampleOrg Terms of Service: https://example.com/tos\n\
            \n\
            URI: https://example.com/login\n\
            Version: 1\n\
            Chain ID: 1\n\
            Nonce: 32891756\n\
            Issued At: 2021-09-30T16:25:24Z\n\
            Resources:\n\
            - ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/\n\
            - https://example.com/my-web2-claim.json";
        let message = SiweMessage {
            expiration_time: None,
            not_before: None,
            request_id: None,
            ..full_siwe()
        };
        assert_eq!(message.to_message(), expected);
        assert_eq!(SiweMessage::parse(expected).unwrap(), message);
    }

    #[test]
    fn siwe_without_a_statement_has_two_empty_lines_after_the_address() {
        let expected = "example.com wants you to sign in with your Ethereum account:\n\
            0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n\
            \n\
            \n\
            URI: https://example.com/login\n\
            Version: 1\n\
            Chain ID: 1\n\
            Nonce: 32891756\n\
            Issued At: 2021-09-30T16:25:24Z";
        assert_eq!(minimal_siwe().to_message(), expected);
        assert_eq!(SiweMessage::parse(expected).unwrap(), minimal_siwe());
    }

    #[test]
    fn siwe_round_trips_with_and_without_optional_fields() {
        let variants = [
            minimal_siwe(),
            full_siwe(),
            SiweMessage {
                statement: Some(String::new()),
                ..minimal_siwe()
            },
            SiweMessage {
                statement: Some("URI: looks like a field".to_owned()),
                ..minimal_siwe()
            },
            SiweMessage {
                request_id: Some(String::new()),
                ..minimal_siwe()
            },
            SiweMessage {
                not_before: Some("2030-01-01T00:00:00Z".to_owned()),
                ..minimal_siwe()
            },
            SiweMessage {
                domain: "https://example.com:3388".to_owned(),
                ..full_siwe()
            },
            SiweMessage {
                domain: "user@[::1]:8080".to_owned(),
                chain_id: u64::MAX,
                ..minimal_siwe()
            },
        ];
        for message in variants {
            let text = message.to_message();
            assert_eq!(SiweMessage::parse(&text).unwrap(), message, "{text}");
        }
    }

    #[test]
    fn a_signed_siwe_message_recovers_the_address_it_names() {
        let signing = key(ANVIL_KEY);
        let message = SiweMessage {
            address: Address::from_signing_key(&signing),
            ..full_siwe()
        };
        let text = message.to_message();
        let signature = sign_personal(&signing, text.as_bytes());
        let parsed = SiweMessage::parse(&text).unwrap();
        assert_eq!(
            recover_personal(text.as_bytes(), &signature).unwrap(),
            parsed.address
        );
    }

    #[test]
    fn siwe_parse_refuses_malformed_messages_naming_the_problem() {
        let good = full_siwe().to_message();
        let minimal = minimal_siwe().to_message();
        let cases: Vec<(String, &str)> = vec![
            (good.replace("Nonce: 32891756", "Nonce: 1234567"), "nonce"),
            (good.replace("Nonce: 32891756", "Nonce: 1234-5678"), "nonce"),
            (good.replace("Version: 1", "Version: 2"), "version"),
            (good.replace("Chain ID: 1", "Chain ID: one"), "chain id"),
            (good.replace("Chain ID: 1", "Chain ID: +1"), "chain id"),
            (
                good.replace("Chain ID: 1", "Chain ID: 18446744073709551616"),
                "64 bits",
            ),
            (
                good.replace("2021-09-30T16:25:24Z", "yesterday"),
                "issued-at",
            ),
            (
                good.replace("2021-10-01T16:25:24.123+02:00", "2021-13-01T00:00:00Z"),
                "expiration",
            ),
            (
                good.replace(
                    "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
                    "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
                ),
                "EIP-55",
            ),
            (
                good.replace(
                    "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
                    "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756CC2",
                ),
                "checksum",
            ),
            (good.replace("wants you", "would like you"), "line 1"),
            (
                good.replace("example.com wants", "exa mple.com wants"),
                "line 1",
            ),
            (good.replace("example.com wants", " wants"), "domain"),
            (good.replace("URI: https://", "URI: //"), "URI"),
            (
                good.replace(
                    "URI: https://example.com/login",
                    "URI: https://ex ample.com",
                ),
                "URI",
            ),
            (
                good.replace("Service: https", "Service: \"https"),
                "statement",
            ),
            (
                good.replace("Request ID: req-42", "Request ID: req/42"),
                "request id",
            ),
            (good.replace("- ipfs://", "* ipfs://"), "`- `"),
            (good.replace("- ipfs://", "- not a uri"), "resource"),
            (format!("{good}\n"), "`- `"),
            (format!("{minimal}\n"), "unexpected line"),
            (good.replace('\n', "\r\n"), "carriage return"),
            (good.replace("\nNot Before: 2021-09-30T16:00:00Z", ""), ""),
            (minimal.replace("\n\n\nURI", "\n\nURI"), "URI: "),
            (minimal.replace("\n\n\nURI", "\nURI"), "empty line"),
            (
                good.replace("tos\n\nURI", "tos\nURI"),
                "empty line after the statement",
            ),
            (
                minimal.replace("\nIssued At: 2021-09-30T16:25:24Z", ""),
                "Issued At",
            ),
            (
                minimal.replace("Version: 1\nChain ID: 1", "Chain ID: 1\nVersion: 1"),
                "Version",
            ),
            (
                format!(
                    "{minimal}\nNot Before: 2021-09-30T16:00:00Z\nExpiration Time: 2021-10-01T00:00:00Z"
                ),
                "in that order",
            ),
            (format!("{minimal}\nBogus: field"), "unexpected line"),
            (String::new(), "line 1"),
        ];
        for (text, problem) in cases {
            if problem.is_empty() {
                // Removing an optional field leaves a valid message.
                assert!(SiweMessage::parse(&text).is_ok(), "{text}");
                continue;
            }
            let why = siwe_problem(&text);
            assert!(
                why.contains(problem),
                "expected {problem:?} in {why:?} for:\n{text}"
            );
        }
    }

    #[test]
    fn siwe_accepts_the_erc_examples_with_port_and_scheme() {
        for domain in ["example.com:3388", "https://example.com"] {
            let text = full_siwe().to_message().replacen("example.com", domain, 1);
            let parsed = SiweMessage::parse(&text).unwrap();
            assert_eq!(parsed.domain, domain);
            assert_eq!(parsed.to_message(), text);
        }
    }

    #[test]
    fn siwe_treats_an_empty_resources_list_as_no_resources() {
        let text = format!("{}\nResources:", minimal_siwe().to_message());
        assert_eq!(SiweMessage::parse(&text).unwrap(), minimal_siwe());
    }

    fn siwe_strategy() -> impl Strategy<Value = SiweMessage> {
        let date = "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])";
        let uri = "(https|ipfs|did:pkh|urn:x-lx)://[a-z0-9.-]{1,12}(/([A-Za-z0-9._~-]|%20){0,8}){0,3}(\\?[a-z]=[0-9]{1,3})?";
        (
            "([a-z][a-z0-9+.-]{0,5}://)?[a-z0-9-]{1,12}(\\.[a-z]{2,6}){0,2}(:[0-9]{1,5})?",
            any::<[u8; 20]>(),
            proptest::option::of("[A-Za-z0-9 .,:;!?'()*+=@#/\\[\\]$&~_-]{0,60}"),
            uri,
            any::<u64>(),
            "[A-Za-z0-9]{8,24}",
            date,
            proptest::option::of(date),
            proptest::option::of(date),
            proptest::option::of("[A-Za-z0-9._~:@!$&'()*+,;=-]{0,20}"),
            proptest::collection::vec(uri, 0..4),
        )
            .prop_map(
                |(
                    domain,
                    address,
                    statement,
                    uri,
                    chain_id,
                    nonce,
                    issued_at,
                    expiration_time,
                    not_before,
                    request_id,
                    resources,
                )| SiweMessage {
                    domain,
                    address: Address(address),
                    statement,
                    uri,
                    version: "1".to_owned(),
                    chain_id,
                    nonce,
                    issued_at,
                    expiration_time,
                    not_before,
                    request_id,
                    resources,
                },
            )
    }

    proptest! {
        #[test]
        fn siwe_messages_round_trip_through_their_text(message in siwe_strategy()) {
            let text = message.to_message();
            prop_assert_eq!(SiweMessage::parse(&text), Ok(message));
        }

        #[test]
        fn siwe_parse_never_panics_on_a_corrupted_message(
            message in siwe_strategy(),
            cut in any::<prop::sample::Index>(),
            insert in "\\PC{0,3}",
        ) {
            let text = message.to_message();
            let mut at = cut.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let corrupted = format!("{}{insert}{}", &text[..at], &text[at..]);
            let _ = SiweMessage::parse(&corrupted);
            let _ = SiweMessage::parse(&text[..at]);
        }
    }
}
