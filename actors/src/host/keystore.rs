//! Secrets at rest: sealed with `systemd-creds` where the host offers it
//! (the TPM2 when present, else the host key in
//! `/var/lib/systemd/credential.secret`), a 0600 plain file otherwise.
//!
//! Secrets never travel on a command line: `systemd-creds encrypt
//! --name=N - -` reads the plaintext from stdin and writes the sealed form
//! to stdout, `decrypt --name=N - -` the reverse. The name is sealed into
//! the credential and checked on decrypt, so a credential file cannot be
//! passed off as another.
//!
//! # Who can seal and unseal
//!
//! The host key is readable by root only, and on systemd < 256 (Debian 12
//! ships 252) `systemd-creds` has no unprivileged mode. So:
//!
//! * **root** (the installer, `voltd enroll` run by it) seals with
//!   [`Keystore::detect`] → [`Keystore::SystemdCreds`];
//! * **the daemon** (user `volt`, sandboxed) does not decrypt itself: the
//!   unit names the sealed file in `LoadCredentialEncrypted=NAME:PATH` and
//!   systemd hands the plaintext to the service in
//!   `$CREDENTIALS_DIRECTORY/NAME` (a private, non-swappable ramfs).
//!   [`Keystore::load`] looks there first;
//! * a daemon that must store a secret it created (a service password the
//!   sealed set lacks, a manifest it fetched itself) gets `PlainFile` from
//!   `detect()` when unprivileged, and writes 0600 until root seals it
//!   (`voltd enroll` pre-generates service passwords so this is rare).
//!
//! [`SecretStore`] pairs the key store with `$CREDENTIALS_DIRECTORY`; every
//! secret file of the state directory goes through it (README "Credentials
//! at rest" lists them).
//!
//! All functions block (they run `systemd-creds` and touch files): call
//! them from `spawn_blocking` or a dedicated thread.

use crate::host::fsutil::{SECRET_FILE_MODE, write_atomic};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use volt_protocol::register::Secret;

/// The environment variable systemd sets to the decrypted credentials'
/// directory (`LoadCredential=`, `LoadCredentialEncrypted=`).
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";
/// Suffix of a sealed credential next to where the plain file would be.
pub const SEALED_SUFFIX: &str = "cred";
/// Largest secret handled (credentials are a few hundred bytes).
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// Which key `systemd-creds` seals with (`--with-key=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealKey {
    /// TPM2 (plus the host key) when a TPM2 is present, else the host key.
    Auto,
    /// The host key only (`/var/lib/systemd/credential.secret`).
    Host,
    /// The TPM2 only.
    Tpm2,
}

impl SealKey {
    fn arg(self) -> &'static str {
        match self {
            SealKey::Auto => "--with-key=auto",
            SealKey::Host => "--with-key=host",
            SealKey::Tpm2 => "--with-key=tpm2",
        }
    }
}

/// Why a secret could not be stored or read. Messages never contain the
/// secret (only paths, names and `systemd-creds`' stderr).
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("invalid credential name {0:?} (use [A-Za-z0-9_.-])")]
    BadName(String),
    #[error("secret larger than {MAX_SECRET_LEN} bytes")]
    TooLarge,
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("systemd-creds {op} --name={name} failed ({status}): {stderr}")]
    Failed {
        op: &'static str,
        name: String,
        status: String,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path, source: std::io::Error) -> KeystoreError {
    KeystoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where secrets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keystore {
    /// Sealed with `program` (normally `systemd-creds`) and `key`.
    SystemdCreds { program: PathBuf, key: SealKey },
    /// 0600 files in the state directory.
    PlainFile,
}

fn valid_name(name: &str) -> Result<(), KeystoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KeystoreError::BadName(name.to_owned()))
    }
}

/// `path` with `.cred` appended (`credentials.json` → `credentials.json.cred`).
pub fn sealed_path(plain: &Path) -> PathBuf {
    let mut s: OsString = plain.as_os_str().to_owned();
    s.push(".");
    s.push(SEALED_SUFFIX);
    PathBuf::from(s)
}

impl Keystore {
    /// `systemd-creds` with `key` if it is on `PATH` and can seal and
    /// unseal a probe value right now (as this user); else `PlainFile`.
    pub fn detect(key: SealKey) -> Keystore {
        let Some(program) = find_on_path("systemd-creds") else {
            return Keystore::PlainFile;
        };
        let candidate = Keystore::SystemdCreds { program, key };
        let probe = b"voltd-keystore-probe";
        let works = candidate
            .seal("voltd-probe", probe)
            .and_then(|sealed| candidate.unseal("voltd-probe", &sealed))
            .is_ok_and(|plain| plain == probe);
        if works {
            candidate
        } else {
            tracing::info!(
                "systemd-creds cannot seal secrets for this user; storing them as 0600 files."
            );
            Keystore::PlainFile
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self, Keystore::SystemdCreds { .. })
    }

    fn run(&self, op: &'static str, name: &str, input: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        let Keystore::SystemdCreds { program, key } = self else {
            return Ok(input.to_vec());
        };
        valid_name(name)?;
        if input.len() > MAX_SECRET_LEN * 2 {
            return Err(KeystoreError::TooLarge);
        }
        let mut cmd = Command::new(program);
        cmd.arg(op).arg(format!("--name={name}"));
        if op == "encrypt" {
            cmd.arg(key.arg());
        } else {
            cmd.arg("--newline=no");
        }
        cmd.arg("-")
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = crate::host::spawn::spawn_blocking(&mut cmd).map_err(|source| {
            KeystoreError::Spawn {
                program: program.display().to_string(),
                source,
            }
        })?;
        // Feed stdin from a thread so a full stdout pipe cannot deadlock us.
        let mut stdin = child.stdin.take();
        let data = input.to_vec();
        let feeder = std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&data);
            }
            drop(stdin);
        });
        let mut out = Vec::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = (&mut s)
                .take((MAX_SECRET_LEN * 4) as u64)
                .read_to_end(&mut out);
        }
        let mut err = Vec::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = (&mut s).take(4096).read_to_end(&mut err);
        }
        let _ = feeder.join();
        let status = child.wait().map_err(|source| KeystoreError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&err)
                .lines()
                .filter(|l| !l.contains("not located on encrypted media"))
                .collect::<Vec<_>>()
                .join(" | ");
            return Err(KeystoreError::Failed {
                op,
                name: name.to_owned(),
                status: status.to_string(),
                stderr,
            });
        }
        Ok(out)
    }

    /// Seals `secret` under `name` (the plain bytes for `PlainFile`).
    pub fn seal(&self, name: &str, secret: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        if secret.len() > MAX_SECRET_LEN {
            return Err(KeystoreError::TooLarge);
        }
        self.run("encrypt", name, secret)
    }

    /// Unseals what [`Keystore::seal`] produced under the same `name`.
    pub fn unseal(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        self.run("decrypt", name, sealed)
    }

    /// Stores `secret` for `plain` (e.g. `<state>/credentials.json`): sealed
    /// at `<plain>.cred` (and any plain file removed) or, for `PlainFile`,
    /// at `plain` with mode 0600 (and any stale sealed file removed). Both
    /// writes are atomic.
    pub fn store(&self, plain: &Path, name: &str, secret: &Secret) -> Result<(), KeystoreError> {
        let sealed_at = sealed_path(plain);
        match self {
            Keystore::SystemdCreds { .. } => {
                let sealed = self.seal(name, secret.expose().as_bytes())?;
                write_atomic(&sealed_at, &sealed, SECRET_FILE_MODE)
                    .map_err(|e| io_err(&sealed_at, e))?;
                remove_if_present(plain)?;
            }
            Keystore::PlainFile => {
                write_atomic(plain, secret.expose().as_bytes(), SECRET_FILE_MODE)
                    .map_err(|e| io_err(plain, e))?;
                remove_if_present(&sealed_at)?;
            }
        }
        Ok(())
    }

    /// Reads the secret stored for `plain` under `name`, in this order:
    /// `$CREDENTIALS_DIRECTORY/<name>` (systemd decrypted it for us),
    /// `<plain>.cred` (unsealed with `systemd-creds`), `plain`. `None` when
    /// none exists. `credentials_dir` is normally
    /// `std::env::var_os(CREDENTIALS_DIRECTORY_ENV)`.
    pub fn load(
        &self,
        credentials_dir: Option<&Path>,
        plain: &Path,
        name: &str,
    ) -> Result<Option<Secret>, KeystoreError> {
        if let Some(secret) = self.load_sealed(credentials_dir, plain, name)? {
            return Ok(Some(secret));
        }
        read_plain(plain)
    }

    /// [`Keystore::load`] without the plain file: what systemd decrypted
    /// for us, else `<plain>.cred` unsealed. A store that merges a plain
    /// file into a sealed one (generated service passwords) reads the two
    /// layers apart.
    pub fn load_sealed(
        &self,
        credentials_dir: Option<&Path>,
        plain: &Path,
        name: &str,
    ) -> Result<Option<Secret>, KeystoreError> {
        valid_name(name)?;
        if let Some(dir) = credentials_dir {
            let p = dir.join(name);
            match std::fs::read(&p) {
                Ok(bytes) => return Ok(Some(to_secret(bytes, &p)?)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p, e)),
            }
        }
        let sealed_at = sealed_path(plain);
        match std::fs::read(&sealed_at) {
            Ok(sealed) => {
                let program = match self {
                    Keystore::SystemdCreds { program, .. } => program.clone(),
                    // A sealed file but no usable keystore: try the tool
                    // anyway, its error says why it cannot be read.
                    Keystore::PlainFile => PathBuf::from("systemd-creds"),
                };
                let ks = Keystore::SystemdCreds {
                    program,
                    key: SealKey::Auto,
                };
                let plain_bytes = ks.unseal(name, &sealed)?;
                Ok(Some(to_secret(plain_bytes, &sealed_at)?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&sealed_at, e)),
        }
    }
}

/// The plain (0600) file `plain`, `None` when it does not exist.
pub fn read_plain(plain: &Path) -> Result<Option<Secret>, KeystoreError> {
    match std::fs::read(plain) {
        Ok(bytes) => Ok(Some(to_secret(bytes, plain)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(plain, e)),
    }
}

/// A key store and what systemd decrypted for this process: how voltd
/// reads and writes every secret file of the state directory (the daemon's
/// credentials go through `cloud::credentials::CredentialStore`, the same
/// pair). Methods block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretStore {
    keystore: Keystore,
    /// `$CREDENTIALS_DIRECTORY`.
    credentials_dir: Option<PathBuf>,
}

static SHARED: std::sync::OnceLock<SecretStore> = std::sync::OnceLock::new();

impl SecretStore {
    /// A given key store and credentials directory (tests, embedders).
    pub fn new(keystore: Keystore, credentials_dir: Option<PathBuf>) -> Self {
        SecretStore {
            keystore,
            credentials_dir,
        }
    }

    /// `systemd-creds` if this process can seal ([`Keystore::detect`]),
    /// `$CREDENTIALS_DIRECTORY` from the environment.
    pub fn detect() -> Self {
        SecretStore {
            keystore: Keystore::detect(SealKey::Auto),
            credentials_dir: std::env::var_os(CREDENTIALS_DIRECTORY_ENV).map(PathBuf::from),
        }
    }

    /// [`SecretStore::detect`] once per process: detection runs
    /// `systemd-creds` twice, and whether this process can seal does not
    /// change while it runs. Blocks the first time.
    pub fn shared() -> &'static SecretStore {
        SHARED.get_or_init(SecretStore::detect)
    }

    pub fn is_sealed(&self) -> bool {
        self.keystore.is_sealed()
    }

    pub fn keystore(&self) -> &Keystore {
        &self.keystore
    }

    pub fn credentials_dir(&self) -> Option<&Path> {
        self.credentials_dir.as_deref()
    }

    /// See [`Keystore::load`].
    pub fn load(&self, plain: &Path, name: &str) -> Result<Option<Secret>, KeystoreError> {
        self.keystore
            .load(self.credentials_dir.as_deref(), plain, name)
    }

    /// See [`Keystore::load_sealed`].
    pub fn load_sealed(&self, plain: &Path, name: &str) -> Result<Option<Secret>, KeystoreError> {
        self.keystore
            .load_sealed(self.credentials_dir.as_deref(), plain, name)
    }

    /// See [`Keystore::store`].
    pub fn store(&self, plain: &Path, name: &str, secret: &Secret) -> Result<(), KeystoreError> {
        self.keystore.store(plain, name, secret)
    }
}

fn to_secret(bytes: Vec<u8>, from: &Path) -> Result<Secret, KeystoreError> {
    if bytes.len() > MAX_SECRET_LEN {
        return Err(KeystoreError::TooLarge);
    }
    String::from_utf8(bytes).map(Secret::new).map_err(|_| {
        io_err(
            from,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "secret is not UTF-8"),
        )
    })
}

/// Removes `p`; a missing file is fine.
pub fn remove_if_present(p: &Path) -> Result<(), KeystoreError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(p, e)),
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spy(dir: &Path) -> (PathBuf, PathBuf) {
        // Records its argv and passes stdin through: lets a test see the
        // exact command line without a secret ever being on it.
        let log = dir.join("argv");
        let prog = dir.join("fake-creds");
        std::fs::write(
            &prog,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" >> {}\ncat\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        (prog, log)
    }

    #[test]
    fn secrets_go_through_stdin_never_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let (program, log) = spy(dir.path());
        let ks = Keystore::SystemdCreds {
            program,
            key: SealKey::Host,
        };
        let plain = dir.path().join("daemon-password");
        ks.store(&plain, "daemon-password", &Secret::new("s3cr3t-value"))
            .unwrap();
        let argv = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            argv,
            "encrypt\n--name=daemon-password\n--with-key=host\n-\n-\n"
        );
        assert!(!argv.contains("s3cr3t"));
        assert!(!plain.exists());
        let got = ks.load(None, &plain, "daemon-password").unwrap().unwrap();
        assert_eq!(got.expose(), "s3cr3t-value");
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .ends_with("decrypt\n--name=daemon-password\n--newline=no\n-\n-\n")
        );
    }

    #[test]
    fn plain_files_are_0600_and_credentials_directory_wins() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("pw");
        let ks = Keystore::PlainFile;
        assert!(ks.load(None, &plain, "pw").unwrap().is_none());
        ks.store(&plain, "pw", &Secret::new("abc")).unwrap();
        let mode = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            ks.load(None, &plain, "pw").unwrap().unwrap().expose(),
            "abc"
        );
        let creds_dir = dir.path().join("creds");
        std::fs::create_dir(&creds_dir).unwrap();
        std::fs::write(creds_dir.join("pw"), b"from-systemd").unwrap();
        assert_eq!(
            ks.load(Some(&creds_dir), &plain, "pw")
                .unwrap()
                .unwrap()
                .expose(),
            "from-systemd"
        );
        assert!(matches!(
            ks.load(None, &plain, "../etc"),
            Err(KeystoreError::BadName(_))
        ));
    }

    #[test]
    fn errors_never_contain_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("failing");
        std::fs::write(&prog, "#!/bin/sh\necho 'no key available' >&2\nexit 1\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ks = Keystore::SystemdCreds {
            program: prog,
            key: SealKey::Auto,
        };
        let e = ks
            .store(&dir.path().join("x"), "x", &Secret::new("topsecret"))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("no key available"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
    }
}
