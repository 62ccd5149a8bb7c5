#!/usr/bin/env bash
# Installs voltd on a Linux host and enrolls it with a VOLT server.
#
#   curl -fsSL <VOLT_CLOUD_URL>/install.sh | sudo VOLT_CLOUD_URL=<url> bash -s -- <cluster-id> <token>
#
# Steps: check the platform, get the voltd binary, create the `volt` user and
# directories, enroll once with the one-time token (`voltd enroll`), install
# and start the systemd unit, wait for the readiness line. Uninstall with
#   sudo bash install.sh --uninstall
#
# Environment:
#   VOLT_CLOUD_URL (or VOLT_CLOUD_SERVER_URL)  server URL (required)
#   VOLTD_BINARY        path of a voltd binary to install (skips the download)
#   VOLTD_DOWNLOAD_URL  where to download the binary (default
#                       $VOLT_CLOUD_URL/downloads/voltd-linux-<arch>)
#   VOLTD_PREFIX        install under this root instead of / (staging, tests)
#   VOLTD_SYSTEMD       1 (default when systemd runs) or 0 to skip the unit
#   VOLTD_USER          service user (default volt; ignored when not root)
#   TEAM_CLUSTER_INSTALL_ROOT  install root for the cluster's files
set -euo pipefail

say() { printf '[voltd-install] %s\n' "$*"; }
die() { printf '[voltd-install] error: %s\n' "$*" >&2; exit 1; }

PREFIX="${VOLTD_PREFIX:-}"
BIN_DIR="$PREFIX/usr/local/bin"
CONF_DIR="$PREFIX/etc/voltd"
STATE_DIR="$PREFIX/var/lib/voltd"
UNIT_DIR="$PREFIX/etc/systemd/system"
SERVICE_USER="${VOLTD_USER:-volt}"
READY_TIMEOUT=90

is_root() { [ "$(id -u)" -eq 0 ]; }
have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }
SYSTEMD="${VOLTD_SYSTEMD:-$(have_systemd && echo 1 || echo 0)}"

uninstall() {
  if [ "$SYSTEMD" = 1 ]; then
    systemctl disable --now voltd 2>/dev/null || true
    rm -f "$UNIT_DIR/voltd.service"
    systemctl daemon-reload || true
  fi
  rm -f "$BIN_DIR/voltd"
  rm -rf "$CONF_DIR" "$STATE_DIR"
  say "voltd removed (the VOLT server keeps the cluster record until you delete it there)"
}

if [ "${1:-}" = "--uninstall" ]; then
  uninstall
  exit 0
fi

[ $# -eq 2 ] || die "usage: install.sh <team-cluster-id> <enrollment-token>   (or --uninstall)"
CLUSTER_ID="$1"
TOKEN="$2"
URL="${VOLT_CLOUD_URL:-${VOLT_CLOUD_SERVER_URL:-}}"
URL="${URL%/}"
[ -n "$URL" ] || die "set VOLT_CLOUD_URL to the VOLT server URL"
case "$CLUSTER_ID" in *[!A-Za-z0-9_-]*|'') die "invalid cluster id: $CLUSTER_ID" ;; esac

[ "$(uname -s)" = Linux ] || die "voltd runs on Linux; this is $(uname -s)"
case "$(uname -m)" in
  x86_64|amd64) ARCH=x86_64 ;;
  aarch64|arm64) ARCH=aarch64 ;;
  *) die "unsupported architecture $(uname -m)" ;;
esac
if [ -z "$PREFIX" ] && ! is_root; then die "run as root (sudo), or set VOLTD_PREFIX for a staging install"; fi

# 1. The binary.
mkdir -p "$BIN_DIR"
if [ -n "${VOLTD_BINARY:-}" ]; then
  [ -x "$VOLTD_BINARY" ] || die "VOLTD_BINARY=$VOLTD_BINARY is not an executable"
  install -m 0755 "$VOLTD_BINARY" "$BIN_DIR/voltd"
else
  command -v curl >/dev/null || die "curl is required"
  SRC="${VOLTD_DOWNLOAD_URL:-$URL/downloads/voltd-linux-$ARCH}"
  say "downloading $SRC"
  curl -fsSL "$SRC" -o "$BIN_DIR/voltd.part" || die "cannot download voltd from $SRC (set VOLTD_BINARY or VOLTD_DOWNLOAD_URL)"
  chmod 0755 "$BIN_DIR/voltd.part" && mv "$BIN_DIR/voltd.part" "$BIN_DIR/voltd"
fi
"$BIN_DIR/voltd" --version >/dev/null || die "the installed voltd does not run on this host"
say "installed $("$BIN_DIR/voltd" --version) to $BIN_DIR/voltd"

# 2. User and directories.
RUN_AS=()
if is_root && [ -z "$PREFIX" ]; then
  if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --create-home --home-dir "/home/$SERVICE_USER" --shell /bin/bash "$SERVICE_USER"
    say "created user $SERVICE_USER"
  fi
  RUN_AS=(runuser -u "$SERVICE_USER" --)
fi
mkdir -p "$CONF_DIR" "$STATE_DIR"
chmod 0700 "$STATE_DIR"
chmod 0750 "$CONF_DIR"
if [ ${#RUN_AS[@]} -gt 0 ]; then
  chown "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
  chown "root:$SERVICE_USER" "$CONF_DIR"
  chmod 0770 "$CONF_DIR"
fi

# 3. Configuration and enrollment (the token is used once, never stored).
CONFIG="$CONF_DIR/voltd.toml"
if [ ! -f "$CONFIG" ]; then
  {
    echo "# voltd configuration (written by install.sh). Reference: voltd config show"
    echo "cloud_url = \"$URL\""
    echo "team_cluster_id = \"$CLUSTER_ID\""
    echo "state_dir = \"$STATE_DIR\""
    if [ -n "${TEAM_CLUSTER_INSTALL_ROOT:-}" ]; then
      echo "[install]"
      echo "install_root = \"$TEAM_CLUSTER_INSTALL_ROOT\""
    fi
  } > "$CONFIG"
  chmod 0640 "$CONFIG"
  [ ${#RUN_AS[@]} -gt 0 ] && chown "root:$SERVICE_USER" "$CONFIG"
fi
say "enrolling cluster $CLUSTER_ID with $URL"
"${RUN_AS[@]}" "$BIN_DIR/voltd" --config "$CONFIG" enroll --token "$TOKEN" \
  || die "enrollment failed (see the message above)"

# 4. Service.
if [ "$SYSTEMD" = 1 ]; then
  mkdir -p "$UNIT_DIR"
  UNIT_SRC="$(dirname "$0")/voltd.service"
  if [ -f "$UNIT_SRC" ]; then
    install -m 0644 "$UNIT_SRC" "$UNIT_DIR/voltd.service"
  else
    curl -fsSL "$URL/voltd.service" -o "$UNIT_DIR/voltd.service" || die "cannot fetch the systemd unit"
  fi
  sed -i "s/^User=.*/User=$SERVICE_USER/; s/^Group=.*/Group=$SERVICE_USER/" "$UNIT_DIR/voltd.service"
  systemctl daemon-reload
  systemctl enable --now voltd
  say "waiting up to ${READY_TIMEOUT}s for the daemon to register"
  for _ in $(seq "$READY_TIMEOUT"); do
    if journalctl -u voltd --no-pager -n 200 2>/dev/null | grep -q "cluster-daemon started for team cluster $CLUSTER_ID"; then
      say "voltd is running and registered. Status: voltd status (as $SERVICE_USER)"
      exit 0
    fi
    sleep 1
  done
  die "voltd did not register within ${READY_TIMEOUT}s: journalctl -u voltd"
else
  say "systemd not used: start the daemon with"
  say "  $BIN_DIR/voltd --config $CONFIG run"
fi
