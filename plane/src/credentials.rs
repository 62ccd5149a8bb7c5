//! Identifiers and secrets, generated the way the reference server does
//! (`CreateTeamClusterUseCase.ts`, `enrollmentToken.ts`), and compared in
//! constant time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Random bytes in an enrollment token (hex-encoded: 64 characters).
const ENROLLMENT_TOKEN_BYTES: usize = 32;
/// Random bytes in the daemon password and every service password (48 hex).
const PASSWORD_BYTES: usize = 24;
/// Random bytes in a service username suffix (`volt_minio_<8 hex>`).
const USERNAME_SUFFIX_BYTES: usize = 4;
/// Random bytes after the 4-byte timestamp of a cluster id (24 hex in all,
/// the size of a MongoDB ObjectId, which is what the reference uses).
const ID_RANDOM_BYTES: usize = 8;

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// A new cluster id: 24 lowercase hex characters shaped like a MongoDB
/// ObjectId (seconds since the epoch first), so ids sort by creation time.
pub fn new_cluster_id() -> String {
    let secs = u32::try_from(crate::clock::Timestamp::now().unix_millis() / 1000).unwrap_or(0);
    format!(
        "{}{}",
        hex::encode(secs.to_be_bytes()),
        random_hex(ID_RANDOM_BYTES)
    )
}

/// A new single-use enrollment token (given out once, stored only hashed).
pub fn new_enrollment_token() -> String {
    random_hex(ENROLLMENT_TOKEN_BYTES)
}

/// A new daemon or service password.
pub fn new_password() -> String {
    random_hex(PASSWORD_BYTES)
}

/// SHA-256 of a token as lowercase hex, the form the reference stores.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality. Both sides are hashed first so neither the
/// content nor the length of the expected secret leaks through timing.
pub fn secure_eq(a: &str, b: &str) -> bool {
    let ha = Sha256::digest(a.as_bytes());
    let hb = Sha256::digest(b.as_bytes());
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// One service account (MinIO, Redis or MongoDB).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

impl ServiceAccount {
    /// `volt_<service>_<8 hex>` with a 48-hex password.
    pub fn generate(service: &str) -> Self {
        ServiceAccount {
            user: format!("volt_{service}_{}", random_hex(USERNAME_SUFFIX_BYTES)),
            password: new_password(),
        }
    }
}

/// The three managed services' accounts, generated at cluster creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCredentials {
    pub minio: ServiceAccount,
    pub redis: ServiceAccount,
    pub mongodb: ServiceAccount,
}

impl ServiceCredentials {
    pub fn generate() -> Self {
        ServiceCredentials {
            minio: ServiceAccount::generate("minio"),
            redis: ServiceAccount::generate("redis"),
            mongodb: ServiceAccount::generate("mongodb"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_lower_hex(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn formats_match_the_reference() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 24);
        assert!(is_lower_hex(&id));
        let token = new_enrollment_token();
        assert_eq!(token.len(), 64);
        assert!(is_lower_hex(&token));
        let pw = new_password();
        assert_eq!(pw.len(), 48);
        let acc = ServiceAccount::generate("redis");
        assert!(acc.user.starts_with("volt_redis_"));
        assert_eq!(acc.user.len(), "volt_redis_".len() + 8);
        assert_eq!(acc.password.len(), 48);
    }

    #[test]
    fn values_are_random() {
        assert_ne!(new_enrollment_token(), new_enrollment_token());
        assert_ne!(new_cluster_id(), new_cluster_id());
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secure_eq_compares_content() {
        assert!(secure_eq("pw", "pw"));
        assert!(!secure_eq("pw", "pW"));
        assert!(!secure_eq("pw", "pw "));
        assert!(!secure_eq("", "x"));
    }

    #[test]
    fn debug_hides_passwords() {
        let acc = ServiceAccount::generate("minio");
        assert!(!format!("{acc:?}").contains(&acc.password));
    }
}
