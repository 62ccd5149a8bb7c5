#!/usr/bin/env bash
# Installs voltd, the VOLT cluster daemon, on a Linux host and enrolls it.
#
#   curl -fsSL https://VOLT/install.sh | sudo bash -s -- \
#     --url https://VOLT --cluster ID --release-key KEY
#
# The server shows this command with the cluster's id and the release key
# filled in. The enrollment token is asked for on the terminal; for
# unattended installs put it in TEAM_CLUSTER_ENROLLMENT_TOKEN and keep it
# through sudo (`sudo --preserve-env=TEAM_CLUSTER_ENROLLMENT_TOKEN bash -s --
# …`), or, when this script is a file rather than piped, use --token-stdin.
# The token never goes on a command line and is never written to a file.
#
# Trust: the script comes over https from the server (loopback may use
# http). It downloads the release manifest and binary (from the server's
# /downloads or --channel, e.g. a mirror) and runs nothing before the
# manifest's ed25519 signature verifies against --release-key — the key you
# pinned by copying the command — and the binary's size and SHA-256 match
# the signed ones. The key is stored in /etc/voltd/release-key.pub (root's)
# and every later self-update of the daemon is verified against it. What
# the key cannot protect is this script itself: it is as trustworthy as the
# https connection you fetched it over.
#
# Options:
#   --url URL            VOLT server (or VOLT_CLOUD_URL)
#   --cluster ID         team cluster id (or TEAM_CLUSTER_ID)
#   --release-key KEY    pinned release key, 44 characters of base64 (or VOLT_RELEASE_KEY)
#   --version V          release to install (default: the latest)
#   --channel URL        release channel (default: URL/downloads)
#   --install-root DIR   root of the cluster's files (default /opt/volt/team-clusters)
#   --token-stdin        read the enrollment token from stdin (script run as a file)
#   --prefix DIR         install under DIR instead of / and skip users, packages
#                        and systemd (staging, tests)
#   --no-start           install everything but do not start the service
#   --uninstall          stop and remove voltd (the server keeps the cluster record)
#
# Needs: bash, curl, sha256sum, openssl >= 3.0 (signature check), and on a
# real install root, systemd and useradd. Redis comes from the package
# manager (apt or dnf) when missing; MongoDB and MinIO are provisioned by
# voltd itself. Every step prints one line; a second run changes nothing.
set -euo pipefail

STEPS=10
CHANGES=0
STEP=0
say() { printf '[voltd-install] %s\n' "$*"; }
die() { printf '[voltd-install] error: %s\n' "$*" >&2; exit 1; }
step() { STEP=$((STEP + 1)); say "[$STEP/$STEPS] $*"; }
changed() { CHANGES=$((CHANGES + 1)); }

URL="${VOLT_CLOUD_URL:-${VOLT_CLOUD_SERVER_URL:-}}"
CLUSTER_ID="${TEAM_CLUSTER_ID:-}"
RELEASE_KEY="${VOLT_RELEASE_KEY:-}"
VERSION=latest
CHANNEL=""
INSTALL_ROOT="${TEAM_CLUSTER_INSTALL_ROOT:-}"
TOKEN_STDIN=0
PREFIX=""
START=1
UNINSTALL=0

while [ $# -gt 0 ]; do
  case "$1" in
    --url) URL="${2:-}"; shift 2 ;;
    --cluster) CLUSTER_ID="${2:-}"; shift 2 ;;
    --release-key) RELEASE_KEY="${2:-}"; shift 2 ;;
    --version) VERSION="${2:-}"; shift 2 ;;
    --channel) CHANNEL="${2:-}"; shift 2 ;;
    --install-root) INSTALL_ROOT="${2:-}"; shift 2 ;;
    --token-stdin) TOKEN_STDIN=1; shift ;;
    --prefix) PREFIX="${2:-}"; shift 2 ;;
    --no-start) START=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --token|--token=*|--enrollment-token*)
      die "the enrollment token is never passed on the command line (it would show in the process list); set TEAM_CLUSTER_ENROLLMENT_TOKEN or answer the prompt" ;;
    -h|--help) sed -n '2,40p' "${BASH_SOURCE[0]:-/dev/null}" 2>/dev/null || true; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

URL="${URL%/}"
BIN_LINK="$PREFIX/usr/local/bin/voltd"
INSTALL_DIR="$PREFIX/opt/voltd"
CONF_DIR="$PREFIX/etc/voltd"
CONFIG="$CONF_DIR/voltd.toml"
KEY_FILE="$CONF_DIR/release-key.pub"
STATE_DIR="$PREFIX/var/lib/voltd"
UNIT_DIR="$PREFIX/etc/systemd/system"
SERVICE_USER=volt
TERMINAL_USER=volt-terminal
READY_TIMEOUT=90

is_root() { [ "$(id -u)" -eq 0 ]; }
staging() { [ -n "$PREFIX" ]; }

# url_ok URL: https, or http to a loopback address only.
url_ok() {
  [[ "$1" =~ ^https://[^/?#@]+(/[^?#]*)?$ ]] && return 0
  [[ "$1" =~ ^http://(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\])(:[0-9]+)?(/[^?#]*)?$ ]]
}

curl_get() { # URL OUT
  curl -fsSL --proto '=https,http' --max-time 900 -o "$2" "$1"
}

# post_json URL: POSTs stdin as JSON (so secrets stay off every command
# line); the answer goes to $TMP/response, its HTTP status to $HTTP_STATUS.
# Call it with a here-string, not in a pipe: it sets a variable.
HTTP_STATUS=""
post_json() {
  HTTP_STATUS="$(curl -sS --proto '=https,http' --max-time 60 -H 'content-type: application/json' \
    --data-binary @- -o "$TMP/response" -w '%{http_code}' "$1")" || return 1
}

json_str() { # KEY: first "KEY":"value" of stdin
  sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -n 1
}

read_token() {
  TOKEN="${TEAM_CLUSTER_ENROLLMENT_TOKEN:-}"
  if [ -z "$TOKEN" ] && [ "$TOKEN_STDIN" = 1 ]; then
    [ -n "${BASH_SOURCE[0]:-}" ] && [ "${BASH_SOURCE[0]}" != "main" ] \
      || die "--token-stdin needs the script as a file: piped into bash, stdin is the script"
    IFS= read -r TOKEN || true
  fi
  if [ -z "$TOKEN" ] && { : </dev/tty; } 2>/dev/null; then
    printf '[voltd-install] enrollment token for cluster %s (input hidden): ' "$CLUSTER_ID" >/dev/tty
    IFS= read -rs TOKEN </dev/tty || true
    printf '\n' >/dev/tty
  fi
  TOKEN="$(printf '%s' "$TOKEN" | tr -d '[:space:]')"
  [ -n "$TOKEN" ] || die "no enrollment token: set TEAM_CLUSTER_ENROLLMENT_TOKEN or run from a terminal"
  case "$TOKEN" in *[!A-Za-z0-9_-]*) die "the enrollment token has unexpected characters" ;; esac
}

# --- Platforms voltd does not serve yet -------------------------------------
# Tell the user and, where the server has the reference's HTTP lifecycle
# route (volt-plane; the Gen B VOLT server has none), record
# operating-system-not-supported for the cluster.
unsupported() {
  local os="$1"
  say "voltd does not run on $os yet: only Linux hosts can be clusters for now."
  if [ -z "$URL" ] || [ -z "$CLUSTER_ID" ]; then
    say "nothing was reported to the server (no --url/--cluster)"
    exit 2
  fi
  url_ok "$URL" || die "refusing $URL: use https:// (http:// only for loopback)"
  local route="$URL/api/team-clusters/$CLUSTER_ID/lifecycle"
  # Probe before spending the single-use token: 404 = no such route here.
  post_json "$route" <<<'{}' || die "cannot reach $URL"
  if [ "$HTTP_STATUS" = 404 ]; then
    say "this server has no HTTP status route: it cannot record operating-system-not-supported before a daemon runs; the cluster keeps its status (no token was used)"
    exit 2
  fi
  read_token
  local password
  post_json "$URL/api/team-clusters/$CLUSTER_ID/healthcheck" \
    <<<"{\"enrollmentToken\":\"$TOKEN\",\"installedVersion\":\"1.0.0\"}" || die "cannot reach $URL"
  [ "$HTTP_STATUS" = 200 ] || die "enrollment refused (HTTP $HTTP_STATUS): $(json_str message <"$TMP/response")"
  password="$(tr -d '\n' <"$TMP/response" | json_str daemonPassword)"
  rm -f "$TMP/response"
  case "$password" in ''|*[!A-Za-z0-9_-]*) die "the server's answer has no usable daemon password" ;; esac
  post_json "$route" <<<"{\"daemonPassword\":\"$password\",\"status\":\"operating-system-not-supported\"}" \
    || die "cannot reach $URL"
  if [ "$HTTP_STATUS" = 200 ]; then
    say "reported operating-system-not-supported for cluster $CLUSTER_ID"
  else
    say "the server did not record the status (HTTP $HTTP_STATUS)"
  fi
  exit 2
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

OS="$(uname -s)"
case "$OS" in
  Linux) ;;
  Darwin) unsupported macOS ;;
  *) unsupported "$OS" ;;
esac

# --- Uninstall ----------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
  if ! staging && command -v systemctl >/dev/null; then
    systemctl disable --now voltd 2>/dev/null || true
    systemctl disable --now voltd-terminal.socket 2>/dev/null || true
  fi
  rm -f "$UNIT_DIR/voltd.service" "$UNIT_DIR/voltd-terminal.socket" "$UNIT_DIR/voltd-terminal@.service" "$BIN_LINK"
  rm -rf "$UNIT_DIR/voltd.service.d"
  ! staging && command -v systemctl >/dev/null && systemctl daemon-reload || true
  rm -rf "$INSTALL_DIR" "$CONF_DIR" "$STATE_DIR"
  say "voltd removed (the VOLT server keeps the cluster record until you delete it there; the login account $TERMINAL_USER and its home are kept: userdel -r $TERMINAL_USER removes them)"
  exit 0
fi

[ -n "$URL" ] || die "pass --url (the VOLT server) or set VOLT_CLOUD_URL"
[ -n "$CLUSTER_ID" ] || die "pass --cluster ID"
case "$CLUSTER_ID" in *[!A-Za-z0-9_-]*) die "invalid cluster id: $CLUSTER_ID" ;; esac
case "$VERSION" in latest|[A-Za-z0-9]*) ;; *) die "invalid --version: $VERSION" ;; esac
case "$VERSION" in *[!A-Za-z0-9.+_-]*) die "invalid --version: $VERSION" ;; esac
[ -n "$CHANNEL" ] || CHANNEL="$URL/downloads"
CHANNEL="${CHANNEL%/}"
[ -n "$INSTALL_ROOT" ] || INSTALL_ROOT="/opt/volt/team-clusters"
case "$INSTALL_ROOT" in /*) ;; *) die "--install-root must be absolute" ;; esac

# --- 1. Platform ---------------------------------------------------------------
case "$(uname -m)" in
  x86_64|amd64) ARCH=x86_64 ;;
  aarch64|arm64) ARCH=aarch64 ;;
  *) die "unsupported architecture $(uname -m)" ;;
esac
url_ok "$URL" || die "refusing $URL: use https:// (http:// only for loopback)"
url_ok "$CHANNEL" || die "refusing release channel $CHANNEL: use https:// (http:// only for loopback)"
printf '%s' "$RELEASE_KEY" | grep -Eq '^[A-Za-z0-9+/]{43}=$' \
  || die "pass --release-key: the server's release key, 44 characters of base64 (it is in the install command)"
if ! staging && ! is_root; then die "run as root (sudo), or pass --prefix DIR for a staging install"; fi
for tool in curl sha256sum openssl base64 sed grep; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
step "platform: linux/$ARCH${PREFIX:+ (staging under $PREFIX)}"

# --- 2. Release manifest, signature ----------------------------------------------
curl_get "$CHANNEL/voltd/$VERSION/linux/$ARCH/manifest.json" "$TMP/manifest.json" \
  || die "cannot fetch the release manifest from $CHANNEL (is a release published for linux/$ARCH?)"
MANIFEST="$(tr -d '\n' <"$TMP/manifest.json")"
m_str() { printf '%s' "$MANIFEST" | json_str "$1"; }
M_FORMAT="$(m_str format)"; M_VERSION="$(m_str version)"; M_OS="$(m_str os)"; M_ARCH="$(m_str arch)"
M_SHA="$(m_str sha256)"; M_SIG="$(m_str signature)"
M_SIZE="$(printf '%s' "$MANIFEST" | sed -n 's/.*"size":\([0-9][0-9]*\).*/\1/p' | head -n 1)"
[ "$M_FORMAT" = voltd-release-v1 ] || die "unknown release manifest format: $M_FORMAT"
printf '%s\n' "$M_VERSION" | grep -Eq '^[A-Za-z0-9.+_-]{1,64}$' || die "bad version in the manifest"
printf '%s\n' "$M_SHA" | grep -Eq '^[0-9a-f]{64}$' || die "bad sha256 in the manifest"
printf '%s\n' "$M_SIZE" | grep -Eq '^[1-9][0-9]{0,9}$' || die "bad size in the manifest"
printf 'voltd-release-v1\nversion=%s\nos=%s\narch=%s\nsize=%s\nsha256=%s\n' \
  "$M_VERSION" "$M_OS" "$M_ARCH" "$M_SIZE" "$M_SHA" >"$TMP/signed"
printf -- '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA%s\n-----END PUBLIC KEY-----\n' "$RELEASE_KEY" >"$TMP/key.pem"
printf '%s' "$M_SIG" | base64 -d >"$TMP/signature" 2>/dev/null || die "the manifest's signature is not base64"
openssl pkeyutl -verify -pubin -inkey "$TMP/key.pem" -rawin -in "$TMP/signed" -sigfile "$TMP/signature" >/dev/null 2>&1 \
  || die "the release manifest's signature does not verify against the pinned release key: refusing to install (openssl >= 3.0 is needed to check it)"
[ "$M_OS" = linux ] && [ "$M_ARCH" = "$ARCH" ] || die "the signed release is for $M_OS/$M_ARCH, not linux/$ARCH"
[ "$VERSION" = latest ] || [ "$VERSION" = "$M_VERSION" ] || die "asked for $VERSION, the signed manifest is for $M_VERSION"
step "release: voltd $M_VERSION, signature verified (key ${RELEASE_KEY:0:12}…)"

# --- 3. Binary ---------------------------------------------------------------------
REL_DIR="$INSTALL_DIR/releases/$M_VERSION"
have_sha() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$M_SHA" ]; }
if have_sha "$REL_DIR/voltd"; then
  BIN_NOTE="already installed"
else
  curl_get "$CHANNEL/voltd/$M_VERSION/linux/$ARCH/voltd" "$TMP/voltd" || die "cannot download the voltd binary"
  GOT_SIZE="$(wc -c <"$TMP/voltd" | tr -d ' ')"
  [ "$GOT_SIZE" = "$M_SIZE" ] || die "the download is $GOT_SIZE bytes, the signed size is $M_SIZE: refusing to install"
  have_sha "$TMP/voltd" || die "the download's SHA-256 does not match the signed one: refusing to install"
  chmod 0755 "$TMP/voltd"
  "$TMP/voltd" --version >/dev/null 2>&1 || die "the verified binary does not run on this host"
  mkdir -p "$REL_DIR"
  cp "$TMP/voltd" "$REL_DIR/.voltd.tmp" && mv -f "$REL_DIR/.voltd.tmp" "$REL_DIR/voltd"
  cp "$TMP/manifest.json" "$REL_DIR/.manifest.tmp" && mv -f "$REL_DIR/.manifest.tmp" "$REL_DIR/manifest.json"
  BIN_NOTE="installed"; changed
fi
# link NAME TARGET: points $INSTALL_DIR/NAME at TARGET atomically.
link() {
  [ "$(readlink "$INSTALL_DIR/$1" 2>/dev/null || true)" = "$2" ] && return 0
  ln -sfn "$2" "$INSTALL_DIR/.$1.tmp" && mv -Tf "$INSTALL_DIR/.$1.tmp" "$INSTALL_DIR/$1"
  changed
}
OLD="$(readlink "$INSTALL_DIR/current" 2>/dev/null || true)"
if [ -n "$OLD" ] && [ "$OLD" != "releases/$M_VERSION" ]; then link previous "$OLD"; fi
link current "releases/$M_VERSION"
[ -e "$INSTALL_DIR/previous" ] || link previous "releases/$M_VERSION"
mkdir -p "$(dirname "$BIN_LINK")"
if [ "$(readlink "$BIN_LINK" 2>/dev/null || true)" != "$INSTALL_DIR/current/voltd" ]; then
  ln -sfn "$INSTALL_DIR/current/voltd" "$BIN_LINK"; changed
fi
step "binary: voltd $M_VERSION $BIN_NOTE (size and SHA-256 match the signed manifest)"

# --- 4. User and directories --------------------------------------------------------
USER_NOTE="staging: runs as $(id -un)"
if ! staging; then
  if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/voltd --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    changed; USER_NOTE="created system user $SERVICE_USER"
  else
    USER_NOTE="user $SERVICE_USER exists"
  fi
fi
for d in "$CONF_DIR" "$STATE_DIR" "$PREFIX$INSTALL_ROOT"; do
  [ -d "$d" ] || { mkdir -p "$d"; changed; }
done
chmod 0700 "$STATE_DIR"
if ! staging; then
  chown -R "$SERVICE_USER:$SERVICE_USER" "$INSTALL_DIR" "$STATE_DIR" "$PREFIX$INSTALL_ROOT"
  chown "root:$SERVICE_USER" "$CONF_DIR"; chmod 0750 "$CONF_DIR"
fi
step "user: $USER_NOTE"

# --- 5. Packages ----------------------------------------------------------------------
if command -v redis-server >/dev/null; then
  PKG_NOTE="redis-server $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') present"
elif staging; then
  PKG_NOTE="redis-server missing; not installed under a staging prefix"
elif command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null || die "apt-get install redis-server failed"
  # voltd runs its own redis-server; the distribution's instance is not used.
  systemctl disable --now redis-server >/dev/null 2>&1 || true
  PKG_NOTE="installed redis-server (apt)"; changed
elif command -v dnf >/dev/null; then
  dnf install -y -q redis >/dev/null || die "dnf install redis failed"
  PKG_NOTE="installed redis (dnf)"; changed
else
  PKG_NOTE="no apt or dnf: install Redis >= 7 yourself (or configure voltd's catalogue)"
fi
step "packages: $PKG_NOTE; MongoDB and MinIO are provisioned by voltd"

# --- 6. Configuration and pinned key --------------------------------------------------------
# put FILE MODE: writes stdin to FILE if the content differs (atomically).
put() {
  cat >"$TMP/put"
  if [ -f "$1" ] && cmp -s "$TMP/put" "$1"; then return 0; fi
  cp "$TMP/put" "$1.tmp" && chmod "$2" "$1.tmp" && mv -f "$1.tmp" "$1"
  changed
}
printf '%s\n' "$RELEASE_KEY" | put "$KEY_FILE" 0644
if [ -f "$CONFIG" ]; then
  CONF_NOTE="kept $CONFIG"
else
  {
    echo "# voltd configuration (written by install.sh). Reference: voltd config show"
    echo "cloud_url = \"$URL\""
    echo "team_cluster_id = \"$CLUSTER_ID\""
    echo "state_dir = \"$STATE_DIR\""
    echo "[install]"
    echo "install_root = \"$PREFIX$INSTALL_ROOT\""
    if [ -n "$CHANNEL" ]; then
      echo "[update]"
      echo "channel = \"$CHANNEL\""
    fi
  } | put "$CONFIG" 0640
  CONF_NOTE="wrote $CONFIG"
fi
staging || chown "root:$SERVICE_USER" "$CONFIG"
step "configuration: $CONF_NOTE; release key pinned in $KEY_FILE"

# --- 7. Enrollment ------------------------------------------------------------------------
# voltd enroll runs as root: where systemd-creds can seal (root, systemd >= 250)
# every secret of the state directory is stored only sealed (*.cred: the
# credentials, the install manifest, the services' generated passwords, which
# enroll pre-generates) and systemd decrypts them for the service (drop-in
# below); elsewhere 0600 files. On an enrolled host `voltd enroll` (no token
# needed) seals plain files left by an older install and adds missing
# service passwords; it changes nothing when there is nothing to do.
SEALED="$STATE_DIR/credentials.json.cred"
SECRET_FILES="credentials.json manifest.json services/credentials.json"
# at_rest: which secret files exist, and in which form.
at_rest() {
  for f in $SECRET_FILES; do
    [ -f "$STATE_DIR/$f" ] && echo "$f"
    [ -f "$STATE_DIR/$f.cred" ] && echo "$f.cred"
  done
  return 0
}
REST_BEFORE="$(at_rest)"
if [ -f "$SEALED" ] || [ -f "$STATE_DIR/credentials.json" ]; then
  "$BIN_LINK" --config "$CONFIG" enroll >"$TMP/enroll.log" 2>&1 \
    || die "cannot read the stored credentials: $(tail -n 3 "$TMP/enroll.log")"
  ENROLL_NOTE="already enrolled"
  if [ "$(at_rest)" != "$REST_BEFORE" ]; then
    changed
    [ -f "$SEALED" ] && ENROLL_NOTE="$ENROLL_NOTE; secrets sealed with systemd-creds"
  fi
else
  read_token
  # The token reaches voltd in its environment, not its argv.
  TEAM_CLUSTER_ENROLLMENT_TOKEN="$TOKEN" "$BIN_LINK" --config "$CONFIG" enroll >"$TMP/enroll.log" 2>&1 \
    || die "enrollment failed: $(tail -n 3 "$TMP/enroll.log")"
  unset TOKEN
  ENROLL_NOTE="enrolled cluster $CLUSTER_ID"; changed
  [ -f "$SEALED" ] && ENROLL_NOTE="$ENROLL_NOTE (secrets sealed with systemd-creds)"
fi
staging || chown -R "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
step "enrollment: $ENROLL_NOTE"

# --- 8. Service unit ------------------------------------------------------------------------
mkdir -p "$UNIT_DIR"
UNIT_BEFORE="$CHANGES"
put "$UNIT_DIR/voltd.service" 0644 <<'VOLTD_UNIT'
# systemd unit for voltd, the VOLT cluster daemon. install.sh embeds this
# file byte for byte (a test checks it); volt-plane serves it at /voltd.service.
#
# Exit codes (README "Exit codes"): 0 stopped/uninstalled, 1 config error and
# 4 credentials rejected stay down; 2 (supervisor gave up), 3 (update or
# rollback) and 5 (restart requested) are restarted.
#
# Updates: releases live in /opt/voltd/releases/<version>/, `current` is what
# runs, `previous` the release before it. Before every start the previous
# binary's `update-guard` counts the starts of a release on trial and swaps
# `current` back after three that never registered (README "Updates").
#
# Sandbox: `systemd-analyze security --offline=yes voltd.service` rates this
# unit 1.4 (CI fails above 3.5). The managed services (redis-server, mongod,
# minio) are voltd's children and inherit it: they need their data dirs
# (under the state dir and the install root, both writable below), the
# network (AF_INET/AF_INET6, AF_NETLINK for Go's interface listing in
# minio), memory mapping (W+X mappings stay allowed: mongod's JavaScript
# engine may JIT) and setrlimit (@resources stays allowed: redis raises its
# file limit). Nothing needs a capability or a setuid binary.
#
# Host terminal: not from this sandbox. It gets its own socket-activated
# helper unit with its own profile (issue 10: voltd-terminal.socket +
# voltd-terminal@.service, listening on /run/voltd-terminal.sock); voltd
# reaches it over AF_UNIX, which this unit allows, and /run stays readable
# under ProtectSystem=strict. This file needs no change for it.
#
# Credentials at rest: where install.sh sealed them with systemd-creds (the
# daemon password, the install manifest, the services' generated passwords),
# its drop-in voltd.service.d/host.conf adds one LoadCredentialEncrypted= per
# sealed file (systemd decrypts them for the daemon; README "Credentials at
# rest"), and ReadWritePaths= for an --install-root outside
# /opt/volt/team-clusters. What a server must read in plain text (Redis's
# ACL file) goes to the RuntimeDirectory= below, a tmpfs, never the state.

[Unit]
Description=VOLT cluster daemon
Documentation=https://github.com/VoltLabs-Research/VOLT
After=network-online.target
Wants=network-online.target

[Service]
# READY=1 once registered with the server (host/notify.rs): `systemctl
# start` returns when the cluster is usable. Offline at boot is normal: until
# it registers the daemon extends this timeout every minute
# (EXTEND_TIMEOUT_USEC), so only a daemon too wedged to say so is killed and
# restarted. A release on trial never extends it: its own registration
# deadline (90 s) rolls it back, and this timeout catches one that hangs
# before it could arm that deadline (the guard counts the restarts).
Type=notify
NotifyAccess=main
TimeoutStartSec=120
User=volt
Group=volt
ExecStartPre=-/opt/voltd/previous/voltd --config /etc/voltd/voltd.toml update-guard
ExecStart=/opt/voltd/current/voltd --config /etc/voltd/voltd.toml run
Restart=on-failure
RestartSec=5
RestartPreventExitStatus=1 4
# voltd stops its managed services itself (SIGTERM, then SIGKILL after their
# stop timeout); give it room before systemd kills what is left.
KillMode=mixed
TimeoutStopSec=60
LimitNOFILE=65536

# Writable: the state (credentials, service data), the runtime files
# (/run/voltd, 0700, emptied at stop), the releases (self-update) and the
# cluster's install root (provisioned servers under deps/).
StateDirectory=voltd
StateDirectoryMode=0700
RuntimeDirectory=voltd
RuntimeDirectoryMode=0700
ReadWritePaths=/opt/voltd -/opt/volt/team-clusters
UMask=0077

NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
KeyringMode=private
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
VOLTD_UNIT
# This host's additions to the unit: sealed credentials for systemd to
# decrypt, an install root outside the unit's writable paths.
# One credential per sealed file (names: cloud/credentials.rs, services/resolve.rs).
{
  for pair in voltd-credentials:credentials.json voltd-manifest:manifest.json \
              voltd-services:services/credentials.json; do
    f="$STATE_DIR/${pair#*:}.cred"
    [ -f "$f" ] && echo "LoadCredentialEncrypted=${pair%%:*}:${f#"$PREFIX"}"
  done
  [ "$INSTALL_ROOT" = /opt/volt/team-clusters ] || echo "ReadWritePaths=$INSTALL_ROOT"
  true
} >"$TMP/dropin"
if [ -s "$TMP/dropin" ]; then
  mkdir -p "$UNIT_DIR/voltd.service.d"
  { echo "# Written by install.sh for this host."; echo "[Service]"; cat "$TMP/dropin"; } \
    | put "$UNIT_DIR/voltd.service.d/host.conf" 0644
fi
UNIT_NOTE="unchanged"
[ "$CHANGES" = "$UNIT_BEFORE" ] || UNIT_NOTE="installed"
if staging; then
  step "service: unit $UNIT_NOTE in $UNIT_DIR (staging: not enabled)"
else
  [ "$UNIT_NOTE" = unchanged ] || systemctl daemon-reload
  if ! systemctl is-enabled --quiet voltd 2>/dev/null; then
    systemctl enable --quiet voltd; changed; UNIT_NOTE="$UNIT_NOTE, enabled"
  fi
  step "service: unit $UNIT_NOTE"
fi

# --- 9. Host terminal --------------------------------------------------------------------
# The terminal's shell never runs as voltd's account: a dedicated login
# account, reached through its own socket-activated helper unit (voltd's
# sandbox stays as it is). Its password stays locked: it is reached only
# through the VOLT terminal (or su/sudo by an admin).
TERM_BEFORE="$CHANGES"
put "$UNIT_DIR/voltd-terminal.socket" 0644 <<'VOLTD_TERMINAL_SOCKET'
# Socket of the host terminal helper. install.sh embeds this file byte for
# byte (a test checks it).
#
# voltd runs sandboxed as user volt (voltd.service) and cannot start a shell
# as anyone else; for every terminal session it connects here, and systemd
# starts one voltd-terminal@.service for the connection. Only root and group
# volt may connect. The path is voltd's default `[terminal] helper_socket`.
[Unit]
Description=VOLT host terminal helper socket
Documentation=https://github.com/VoltLabs-Research/VOLT

[Socket]
ListenStream=/run/voltd-terminal.sock
Accept=yes
SocketUser=root
SocketGroup=volt
SocketMode=0660
# Far above voltd's own limit (`[terminal] max_sessions`, 1..1024, default
# 16): this only bounds what a runaway client could start.
MaxConnections=64

[Install]
WantedBy=sockets.target
VOLTD_TERMINAL_SOCKET
put "$UNIT_DIR/voltd-terminal@.service" 0644 <<'VOLTD_TERMINAL_SERVICE'
# One host terminal session, started by voltd-terminal.socket for a
# connection from voltd. install.sh embeds this file byte for byte.
#
# No sandbox, on purpose: the terminal is the whole host, and every
# restriction here would also be the shell's (ProtectSystem would make the
# disks read-only in it, NoNewPrivileges would break sudo). What keeps it
# safe is how little it does: `voltd terminal-helper` reads one request from
# the socket, starts the login shell as `[terminal] user` (default
# volt-terminal; never root, never voltd's account), passes the terminal back
# to voltd, and when voltd hangs up it sends SIGHUP, waits two seconds, kills
# what is left and exits. The daemon's own unit stays as tight as it is.
[Unit]
Description=VOLT host terminal session
Documentation=https://github.com/VoltLabs-Research/VOLT
CollectMode=inactive-or-failed

[Service]
ExecStart=/opt/voltd/current/voltd --config /etc/voltd/voltd.toml terminal-helper
StandardInput=socket
StandardOutput=journal
StandardError=journal
# The session's processes live in this unit's cgroup: whatever the helper
# could not kill stops with the unit.
KillMode=control-group
VOLTD_TERMINAL_SERVICE
if staging; then
  TERM_NOTE="helper units in $UNIT_DIR (staging: no account, not enabled)"
else
  if id "$TERMINAL_USER" >/dev/null 2>&1; then
    TERM_NOTE="account $TERMINAL_USER exists"
  else
    useradd --create-home --user-group --shell /bin/bash "$TERMINAL_USER"
    changed; TERM_NOTE="created login account $TERMINAL_USER"
  fi
  [ "$CHANGES" = "$TERM_BEFORE" ] || systemctl daemon-reload
  if ! systemctl is-enabled --quiet voltd-terminal.socket 2>/dev/null; then
    systemctl enable --now --quiet voltd-terminal.socket; changed
  fi
  TERM_NOTE="$TERM_NOTE; helper socket /run/voltd-terminal.sock"
fi
step "terminal: $TERM_NOTE"

# --- 10. Start ---------------------------------------------------------------------------------
if staging || [ "$START" = 0 ]; then
  step "start: skipped; run: $BIN_LINK --config $CONFIG run"
elif systemctl is-active --quiet voltd && [ "$CHANGES" = 0 ]; then
  step "start: voltd is running"
else
  # Type=notify: the unit is "active" once voltd registered with the server.
  systemctl restart --no-block voltd
  changed
  for _ in $(seq "$READY_TIMEOUT"); do
    systemctl is-active --quiet voltd && break
    sleep 1
  done
  systemctl is-active --quiet voltd \
    || die "voltd did not register within ${READY_TIMEOUT}s: see journalctl -u voltd"
  step "start: voltd is running and registered"
fi

if [ "$CHANGES" = 0 ]; then
  say "done: no change (voltd $M_VERSION is installed and configured for cluster $CLUSTER_ID)"
else
  say "done: voltd $M_VERSION installed for cluster $CLUSTER_ID ($CHANGES change(s)); status: voltd status"
fi
