#!/usr/bin/env bash
# Installs the peers that retriever's tests run against, if they are missing:
#   Debian: orthanc, orthanc-dicomweb (the DICOMweb plugin), dcmtk (storescp, echoscu, dcmdump),
#           openssl (a private certificate authority for the HTTPS and DICOM TLS tests),
#           nginx-light (a cloud front that asks for a client certificate),
#           strace (counts the journal's syncs), systemd (systemd-analyze, systemd-sysusers:
#           checks the service units), zip and unzip (the Windows release archive),
#           groff-base (renders the man page)
#   PyPI:   pydicom (>= 3), pynetdicom, dicomweb-client, numpy (test data, DIMSE peers),
#           pillow (JPEG test instances)
# Idempotent and quiet when everything is present. The Debian orthanc package starts a system
# service on ports 4242/8042, and nginx one on port 80; the tests run private instances, so
# those services are stopped.
set -euo pipefail

log() { echo "install-peers: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

missing_debs=()
[ -x /usr/sbin/Orthanc ] || missing_debs+=(orthanc)
if ! dpkg-query -W -f='${Status}' orthanc-dicomweb 2>/dev/null | grep -q 'install ok installed'; then
    missing_debs+=(orthanc-dicomweb)
fi
# Certificates for the HTTPS tests.
command -v openssl >/dev/null || missing_debs+=(openssl)
# The mutual-TLS tests run their own nginx in front of Orthanc.
[ -x /usr/sbin/nginx ] || missing_debs+=(nginx-light)
# The journal test counts the syncs of a delivery with strace.
command -v strace >/dev/null || missing_debs+=(strace)
# The install tests check the service units with systemd-analyze and systemd-sysusers.
command -v systemd-analyze >/dev/null || missing_debs+=(systemd)
# The packaging tests make and read a Windows zip archive.
command -v zip >/dev/null || missing_debs+=(zip)
# The docs test renders the man page with groff.
command -v groff >/dev/null || missing_debs+=(groff-base)
command -v unzip >/dev/null || missing_debs+=(unzip)
for tool in storescp echoscu dcmdump; do
    if [ ! -x "/usr/bin/$tool" ]; then
        missing_debs+=(dcmtk)
        break
    fi
done

apt_updated=false
apt_install() {
    if [ "$apt_updated" = false ]; then
        log "apt-get update"
        $SUDO apt-get update -qq
        apt_updated=true
    fi
    log "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ "${#missing_debs[@]}" -gt 0 ]; then
    apt_install "${missing_debs[@]}"
fi

# The package's maintainer scripts may have started the system Orthanc; it would hold
# 4242/8042 and is not what the tests talk to.
stop_system_orthanc() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now orthanc >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1 && [ -x /etc/init.d/orthanc ]; then
        $SUDO update-rc.d orthanc disable >/dev/null 2>&1 || true
    fi
    # Without systemd the maintainer script may still have started the daemon. Not with
    # `/etc/init.d/orthanc stop`: it stops every process running /usr/sbin/Orthanc, private
    # test instances included. Only the daemon running the system configuration is ended.
    local pid
    for pid in $(pgrep -x Orthanc 2>/dev/null || true); do
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' /etc/orthanc/\? *$'; then
            log "stopping the system Orthanc service (pid $pid)"
            $SUDO kill "$pid" 2>/dev/null || true
        fi
    done
}
stop_system_orthanc

# Likewise the system nginx the package starts (port 80). The tests' own nginx runs as one
# process with its own pid file; the system daemon is the one in /run/nginx.pid.
stop_system_nginx() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1 && [ -x /etc/init.d/nginx ]; then
        $SUDO update-rc.d nginx disable >/dev/null 2>&1 || true
    fi
    local pid
    pid=$(cat /run/nginx.pid 2>/dev/null || true)
    if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^nginx: master process'; then
        log "stopping the system nginx service (pid $pid)"
        $SUDO kill "$pid" 2>/dev/null || true
    fi
}
stop_system_nginx

if [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] \
    && ! dpkg -L orthanc-dicomweb 2>/dev/null | grep -q 'libOrthancDicomWeb\.so'; then
    log "error: orthanc-dicomweb is installed but its plugin library was not found"
    exit 1
fi

# PEERS_VENV=DIR (scripts/demo.sh): the Python packages go into a virtual environment at DIR,
# created if missing, never into the system's Python; run the scripts with DIR/bin/python.
# Without it (the tests, CI) they go where python3 installs, as before.
PY=python3
if [ -n "${PEERS_VENV:-}" ]; then
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3
    fi
    if [ ! -x "$PEERS_VENV/bin/python" ]; then
        log "creating a Python virtual environment in $PEERS_VENV"
        # Debian ships `venv` without ensurepip unless python3-venv is installed.
        if ! python3 -m venv "$PEERS_VENV" >/dev/null 2>&1; then
            rm -rf "$PEERS_VENV"
            apt_install python3-venv
            python3 -m venv "$PEERS_VENV"
        fi
    fi
    PY="$PEERS_VENV/bin/python"
fi

python_ok() {
    "$PY" - <<'EOF' 2>/dev/null
import pydicom, pynetdicom, dicomweb_client, numpy, PIL
assert int(pydicom.__version__.split(".")[0]) >= 3
EOF
}

if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-pip
fi
if ! python_ok; then
    if ! "$PY" -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    pkgs=("pydicom>=3" pynetdicom dicomweb-client numpy pillow)
    log "pip install ${pkgs[*]}${PEERS_VENV:+ into $PEERS_VENV}"
    # Debian's own python3 is "externally managed" (PEP 668); a pyenv or venv python is not.
    if ! "$PY" -m pip install -q --disable-pip-version-check "${pkgs[@]}" 2>/tmp/install-peers-pip.$$; then
        if [ -z "${PEERS_VENV:-}" ] && grep -q externally-managed /tmp/install-peers-pip.$$; then
            python3 -m pip install -q --disable-pip-version-check --break-system-packages "${pkgs[@]}"
        else
            cat /tmp/install-peers-pip.$$ >&2
            rm -f /tmp/install-peers-pip.$$
            exit 1
        fi
    fi
    rm -f /tmp/install-peers-pip.$$
    if ! python_ok; then
        log "error: python packages still not importable by $(command -v "$PY")"
        exit 1
    fi
fi
