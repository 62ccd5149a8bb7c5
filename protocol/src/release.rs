//! Signed voltd releases: the manifest a release channel serves next to each
//! binary, the canonical byte string its ed25519 signature covers, and the
//! verification every consumer (the daemon's self-update, the installer)
//! performs before it trusts a byte of the binary.
//!
//! # The manifest
//!
//! `GET <channel>/voltd/<version>/<os>/<arch>/manifest.json`:
//!
//! ```json
//! {"format":"voltd-release-v1","version":"1.2.3","os":"linux","arch":"x86_64",
//!  "size":18734512,"sha256":"<64 lowercase hex>","keyId":"<16 hex>","signature":"<base64>"}
//! ```
//!
//! The binary itself is `<channel>/voltd/<version>/<os>/<arch>/voltd`.
//! `keyId` is informational (it names the signing key in error messages);
//! it is not signed and never trusted.
//!
//! # What is signed
//!
//! The signature is ed25519 (RFC 8032, pure, no pre-hash) over these exact
//! bytes — one `key=value` line each, LF line ends, in this order, nothing
//! else:
//!
//! ```text
//! voltd-release-v1
//! version=1.2.3
//! os=linux
//! arch=x86_64
//! size=18734512
//! sha256=<64 lowercase hex>
//! ```
//!
//! Every field is validated before the string is built (the version is
//! 1..64 characters of `[A-Za-z0-9.+_-]`, `os` and `arch` come from fixed
//! lists, `size` is a decimal without leading zeros, the digest is lowercase
//! hex), so no value can contain a newline or an `=`: the string has exactly
//! one reading, and a shell installer can rebuild it with `printf`. The
//! first line separates this signature's domain from any other use of the
//! key. Because version, platform, size and digest are all signed, a
//! channel (or a mirror, or anyone in the middle) can neither swap in
//! another binary nor serve an old release under a new version's name.
//!
//! # Keys
//!
//! A public key is the 32 raw ed25519 bytes, written as standard base64 (44
//! characters). That string is what an operator pins: the install one-liner
//! carries it, the installer stores it in `/etc/voltd/release-key.pub`, and
//! the daemon verifies every update against that file. [`PublicKey::to_pem`]
//! gives the same key as a SubjectPublicKeyInfo PEM for `openssl pkeyutl`.
//!
//! Crypto is `ring`'s ed25519, the provider already in the tree for TLS.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// First line of the signed string and the manifest's `format`.
pub const RELEASE_FORMAT: &str = "voltd-release-v1";
/// Largest manifest a consumer reads: a real one is about 300 bytes.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024;
/// Largest release binary accepted (a release build is ~20 MB; this leaves
/// room for debug info while bounding what a channel can make a host store).
pub const MAX_RELEASE_SIZE: u64 = 512 * 1024 * 1024;
/// Longest version (the server's `installedVersion` limit).
pub const MAX_VERSION_LEN: usize = 64;
/// Operating systems a release may be built for.
pub const KNOWN_OS: [&str; 3] = ["linux", "darwin", "windows"];
/// Architectures a release may be built for (Rust's names).
pub const KNOWN_ARCH: [&str; 2] = ["x86_64", "aarch64"];
/// The DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410); the raw
/// 32-byte key follows it.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a release or key is refused. The `code` is stable and machine
/// readable (it ends up in `update-failed` reasons).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("invalid release manifest: {0}")]
    InvalidManifest(String),
    #[error("invalid release field: {0}")]
    InvalidField(String),
    #[error("invalid public key: {0}")]
    InvalidKey(String),
    #[error(
        "release signature does not verify against the pinned key {pinned} (manifest names key {claimed})"
    )]
    BadSignature { pinned: String, claimed: String },
}

impl ReleaseError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ReleaseError::InvalidManifest(_) | ReleaseError::InvalidField(_) => "invalid-manifest",
            ReleaseError::InvalidKey(_) => "invalid-key",
            ReleaseError::BadSignature { .. } => "bad-signature",
        }
    }
}

/// The platform a release is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

impl Platform {
    /// Validating constructor.
    pub fn new(os: &str, arch: &str) -> Result<Self, ReleaseError> {
        if !KNOWN_OS.contains(&os) {
            return Err(ReleaseError::InvalidField(format!(
                "os {os:?} is not one of {KNOWN_OS:?}"
            )));
        }
        if !KNOWN_ARCH.contains(&arch) {
            return Err(ReleaseError::InvalidField(format!(
                "arch {arch:?} is not one of {KNOWN_ARCH:?}"
            )));
        }
        Ok(Platform {
            os: os.to_owned(),
            arch: arch.to_owned(),
        })
    }

    /// The platform this program was built for, if releases exist for it.
    pub fn current() -> Result<Self, ReleaseError> {
        Platform::new(std::env::consts::OS, std::env::consts::ARCH)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)
    }
}

/// Checks a release version: 1..64 characters of `[A-Za-z0-9.+_-]`, not
/// `.`/`..` (it becomes a path segment).
pub fn validate_version(v: &str) -> Result<(), ReleaseError> {
    let ok = !v.is_empty()
        && v.len() <= MAX_VERSION_LEN
        && v != "."
        && v != ".."
        && v != "latest"
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::InvalidField(format!(
            "version {v:?} must be 1..{MAX_VERSION_LEN} characters of [A-Za-z0-9.+_-] (not \".\", \"..\" or \"latest\")"
        )))
    }
}

fn validate_sha256(s: &str) -> Result<(), ReleaseError> {
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ReleaseError::InvalidField(
            "sha256 must be 64 lowercase hex digits".into(),
        ))
    }
}

/// What a signature vouches for: one binary of one version for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    version: String,
    platform: Platform,
    size: u64,
    sha256: String,
}

impl ReleaseInfo {
    /// Validating constructor (see the module docs for the rules).
    pub fn new(
        version: &str,
        platform: Platform,
        size: u64,
        sha256: &str,
    ) -> Result<Self, ReleaseError> {
        validate_version(version)?;
        // Re-check: `Platform`'s fields are public.
        let platform = Platform::new(&platform.os, &platform.arch)?;
        if size == 0 || size > MAX_RELEASE_SIZE {
            return Err(ReleaseError::InvalidField(format!(
                "size must be 1..{MAX_RELEASE_SIZE} bytes, got {size}"
            )));
        }
        validate_sha256(sha256)?;
        Ok(ReleaseInfo {
            version: version.to_owned(),
            platform,
            size,
            sha256: sha256.to_owned(),
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// Exact size of the binary in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// SHA-256 of the binary, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The bytes the signature covers (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        format!(
            "{RELEASE_FORMAT}\nversion={}\nos={}\narch={}\nsize={}\nsha256={}\n",
            self.version, self.platform.os, self.platform.arch, self.size, self.sha256
        )
        .into_bytes()
    }
}

/// `manifest.json` as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseManifest {
    pub format: String,
    pub version: String,
    pub os: String,
    pub arch: String,
    pub size: u64,
    pub sha256: String,
    /// Names the signing key; informational, not signed.
    pub key_id: String,
    /// Standard base64 of the 64-byte ed25519 signature.
    pub signature: String,
}

impl ReleaseManifest {
    /// Parses a served manifest (at most [`MAX_MANIFEST_BYTES`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, ReleaseError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ReleaseError::InvalidManifest(format!(
                "larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| ReleaseError::InvalidManifest(e.to_string()))
    }

    /// The fields as a validated [`ReleaseInfo`] (not yet trusted).
    fn info(&self) -> Result<ReleaseInfo, ReleaseError> {
        if self.format != RELEASE_FORMAT {
            return Err(ReleaseError::InvalidManifest(format!(
                "format {:?} is not {RELEASE_FORMAT}",
                self.format
            )));
        }
        ReleaseInfo::new(
            &self.version,
            Platform::new(&self.os, &self.arch)?,
            self.size,
            &self.sha256,
        )
    }

    /// Checks the signature over the canonical bytes against `key`; the only
    /// way to obtain a [`VerifiedRelease`].
    pub fn verify(&self, key: &PublicKey) -> Result<VerifiedRelease, ReleaseError> {
        let info = self.info()?;
        let bad = || ReleaseError::BadSignature {
            pinned: key.key_id(),
            claimed: self.key_id.chars().take(32).collect(),
        };
        let sig = B64.decode(self.signature.trim()).map_err(|_| bad())?;
        UnparsedPublicKey::new(&ED25519, key.0)
            .verify(&info.canonical_bytes(), &sig)
            .map_err(|_| bad())?;
        Ok(VerifiedRelease { info })
    }
}

/// A release whose manifest verified against a pinned key. Its size and
/// digest are what the downloaded binary must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRelease {
    info: ReleaseInfo,
}

impl VerifiedRelease {
    pub fn info(&self) -> &ReleaseInfo {
        &self.info
    }
}

/// An ed25519 public key (32 raw bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// Parses the pinned form: standard base64 of the 32 raw bytes (44
    /// characters), surrounding whitespace ignored. A PEM
    /// SubjectPublicKeyInfo is accepted too.
    pub fn parse(text: &str) -> Result<Self, ReleaseError> {
        let t = text.trim();
        if t.starts_with("-----BEGIN PUBLIC KEY-----") {
            let body: String = t
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::trim)
                .collect();
            let der = B64
                .decode(body)
                .map_err(|e| ReleaseError::InvalidKey(format!("PEM body is not base64: {e}")))?;
            let raw = der
                .strip_prefix(&SPKI_ED25519_PREFIX[..])
                .ok_or_else(|| ReleaseError::InvalidKey("not an ed25519 public key".into()))?;
            return Self::from_slice(raw);
        }
        let raw = B64
            .decode(t)
            .map_err(|e| ReleaseError::InvalidKey(format!("not base64: {e}")))?;
        Self::from_slice(&raw)
    }

    fn from_slice(raw: &[u8]) -> Result<Self, ReleaseError> {
        let bytes: [u8; 32] = raw.try_into().map_err(|_| {
            ReleaseError::InvalidKey(format!("expected 32 bytes, got {}", raw.len()))
        })?;
        Ok(PublicKey(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The pinned form (44 characters of base64).
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// SubjectPublicKeyInfo PEM (what `openssl pkeyutl -pubin` reads).
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            B64.encode(der)
        )
    }

    /// SHA-256 of the raw key, lowercase hex (64 digits).
    pub fn fingerprint(&self) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, &self.0).as_ref())
    }

    /// The first 16 hex digits of the fingerprint: names a key in messages.
    pub fn key_id(&self) -> String {
        self.fingerprint()[..16].to_owned()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A release signing key (ed25519), held by the publisher (volt-plane).
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// A new key as PKCS#8 v2 DER: the form to store (0600).
    pub fn generate_pkcs8() -> Result<Vec<u8>, ReleaseError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| ReleaseError::InvalidKey("cannot generate an ed25519 key".into()))
    }

    /// Loads a stored PKCS#8 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, ReleaseError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(SigningKey)
            .map_err(|e| ReleaseError::InvalidKey(format!("not an ed25519 PKCS#8 key: {e}")))
    }

    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(raw)
    }

    /// Signs `info` and returns the manifest to serve.
    pub fn sign(&self, info: &ReleaseInfo) -> ReleaseManifest {
        let sig = self.0.sign(&info.canonical_bytes());
        ReleaseManifest {
            format: RELEASE_FORMAT.to_owned(),
            version: info.version.clone(),
            os: info.platform.os.clone(),
            arch: info.platform.arch.clone(),
            size: info.size,
            sha256: info.sha256.clone(),
            key_id: self.public_key().key_id(),
            signature: B64.encode(sig.as_ref()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key().key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    fn info() -> ReleaseInfo {
        ReleaseInfo::new(
            "1.2.3",
            Platform::new("linux", "x86_64").unwrap(),
            4096,
            DIGEST,
        )
        .unwrap()
    }

    #[test]
    fn canonical_bytes_are_the_documented_lines() {
        assert_eq!(
            String::from_utf8(info().canonical_bytes()).unwrap(),
            format!(
                "voltd-release-v1\nversion=1.2.3\nos=linux\narch=x86_64\nsize=4096\nsha256={DIGEST}\n"
            )
        );
    }

    #[test]
    fn a_signed_manifest_verifies_and_round_trips_through_json() {
        let k = key();
        let m = k.sign(&info());
        let json = serde_json::to_vec(&m).unwrap();
        let parsed = ReleaseManifest::parse(&json).unwrap();
        let v = parsed.verify(&k.public_key()).unwrap();
        assert_eq!(v.info(), &info());
        assert_eq!(parsed.key_id, k.public_key().key_id());
    }

    #[test]
    fn every_signed_field_is_bound_by_the_signature() {
        let k = key();
        let m = k.sign(&info());
        let mut tampered = Vec::new();
        let mut t = m.clone();
        t.version = "1.2.4".into();
        tampered.push(t);
        let mut t = m.clone();
        t.arch = "aarch64".into();
        tampered.push(t);
        let mut t = m.clone();
        t.os = "darwin".into();
        tampered.push(t);
        let mut t = m.clone();
        t.size += 1;
        tampered.push(t);
        let mut t = m.clone();
        t.sha256 = DIGEST.replace('9', "8");
        tampered.push(t);
        for t in tampered {
            let e = t.verify(&k.public_key()).unwrap_err();
            assert_eq!(e.code(), "bad-signature", "{t:?}");
        }
        // keyId is not signed: changing it does not matter.
        let mut t = m.clone();
        t.key_id = "whatever".into();
        assert!(t.verify(&k.public_key()).is_ok());
    }

    #[test]
    fn another_key_is_refused_and_named() {
        let (a, b) = (key(), key());
        let m = a.sign(&info());
        let e = m.verify(&b.public_key()).unwrap_err();
        let ReleaseError::BadSignature { pinned, claimed } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(pinned, &b.public_key().key_id());
        assert_eq!(claimed, &a.public_key().key_id());
        assert!(e.to_string().contains(&b.public_key().key_id()));
    }

    #[test]
    fn garbage_signatures_and_manifests_are_refused() {
        let k = key();
        let mut m = k.sign(&info());
        m.signature = "not base64!".into();
        assert_eq!(
            m.verify(&k.public_key()).unwrap_err().code(),
            "bad-signature"
        );
        m.signature = B64.encode([0u8; 64]);
        assert_eq!(
            m.verify(&k.public_key()).unwrap_err().code(),
            "bad-signature"
        );
        let mut m = k.sign(&info());
        m.format = "voltd-release-v0".into();
        assert_eq!(
            m.verify(&k.public_key()).unwrap_err().code(),
            "invalid-manifest"
        );
        assert!(ReleaseManifest::parse(b"{").is_err());
        assert!(ReleaseManifest::parse(&vec![b' '; MAX_MANIFEST_BYTES + 1]).is_err());
        let mut v = serde_json::to_value(k.sign(&info())).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(ReleaseManifest::parse(v.to_string().as_bytes()).is_err());
        // Duplicate keys: serde refuses them, so two readings cannot exist.
        let dup = serde_json::to_string(&k.sign(&info())).unwrap().replacen(
            "{",
            "{\"version\":\"9.9.9\",",
            1,
        );
        assert!(ReleaseManifest::parse(dup.as_bytes()).is_err());
    }

    #[test]
    fn fields_are_validated_before_anything_is_signed() {
        let p = || Platform::new("linux", "x86_64").unwrap();
        for v in [
            "",
            ".",
            "..",
            "latest",
            "1.0\n",
            "1/2",
            "a b",
            &"9".repeat(65),
        ] {
            assert!(ReleaseInfo::new(v, p(), 1, DIGEST).is_err(), "{v:?}");
        }
        assert!(ReleaseInfo::new("1.0.0+build_1-rc.2", p(), 1, DIGEST).is_ok());
        assert!(ReleaseInfo::new("1", p(), 0, DIGEST).is_err());
        assert!(ReleaseInfo::new("1", p(), MAX_RELEASE_SIZE + 1, DIGEST).is_err());
        assert!(ReleaseInfo::new("1", p(), 1, &DIGEST.to_uppercase()).is_err());
        assert!(ReleaseInfo::new("1", p(), 1, &DIGEST[1..]).is_err());
        assert!(Platform::new("linux", "i686").is_err());
        assert!(Platform::new("freebsd", "x86_64").is_err());
        let bad = Platform {
            os: "linux\nsize=1".into(),
            arch: "x86_64".into(),
        };
        assert!(ReleaseInfo::new("1", bad, 1, DIGEST).is_err());
    }

    #[test]
    fn public_keys_parse_from_base64_and_pem_and_match_openssl_framing() {
        let k = key().public_key();
        assert_eq!(k.to_base64().len(), 44);
        assert_eq!(
            PublicKey::parse(&format!(" {}\n", k.to_base64())).unwrap(),
            k
        );
        let pem = k.to_pem();
        // The fixed DER prefix is 12 bytes, so the PEM body is the prefix's
        // base64 followed by the key's: what install.sh builds with printf.
        assert!(
            pem.contains(&format!("MCowBQYDK2VwAyEA{}", k.to_base64())),
            "{pem}"
        );
        assert_eq!(PublicKey::parse(&pem).unwrap(), k);
        assert!(PublicKey::parse("AAAA").is_err());
        assert!(PublicKey::parse("!!").is_err());
        assert_eq!(k.fingerprint().len(), 64);
        assert_eq!(k.key_id(), k.fingerprint()[..16]);
        assert!(format!("{k:?}").contains(&k.key_id()));
    }
}
