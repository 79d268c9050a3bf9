#!/usr/bin/env bash
# Install tegrastats-api into a virtual environment under /opt/tegrastats-api, with the
# same systemd unit as the .deb (ExecStart pointing into the venv). For boards whose
# distribution packages are too old for the .deb (JetPack 5 / Ubuntu 20.04 ships
# python3-socketio 4.4); everywhere else prefer `apt install ./tegrastats-api_*.deb`.
# packaging/uninstall.sh removes what this script installed.
set -euo pipefail

NAME=tegrastats-api
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<EOF
usage: $0 [--host H] [--port P] [--wheel FILE] [--python PY] [--prefix DIR] [--root DIR]

Installs $NAME into a virtual environment and sets it up as a systemd service.

  --host H        address to listen on, written to /etc/default/$NAME (default 0.0.0.0)
  --port P        TCP port, written to /etc/default/$NAME (default 58090)
  --wheel FILE    install this wheel (default: the source tree around this script)
  --python PY     the Python that creates the venv (default: python3, 3.8 or later)
  --prefix DIR    the virtual environment (default: /opt/$NAME)
  --root DIR      install below DIR instead of / (a scratch root for tests): nothing
                  outside DIR is touched, systemctl is not run, and the venv's scripts
                  point into DIR
  -h, --help      this help

Files: PREFIX (the venv), /etc/systemd/system/$NAME.service,
/etc/default/$NAME, /etc/$NAME/$NAME.conf (kept if present), /usr/local/bin/$NAME.
Without --root it must run as root; the service is enabled and (re)started where
systemd is running, and the commands are printed instead where it is not.
EOF
}

die() { echo "install.sh: error: $*" >&2; exit 2; }
say() { echo "== $*"; }

host="" port="" wheel="" python="python3" prefix="/opt/$NAME" root=""
while [ $# -gt 0 ]; do
    case "$1" in
        --host) [ $# -ge 2 ] || die "--host needs a value"; host="$2"; shift 2 ;;
        --port) [ $# -ge 2 ] || die "--port needs a value"; port="$2"; shift 2 ;;
        --wheel) [ $# -ge 2 ] || die "--wheel needs a file"; wheel="$2"; shift 2 ;;
        --python) [ $# -ge 2 ] || die "--python needs a value"; python="$2"; shift 2 ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
        --root) [ $# -ge 2 ] || die "--root needs a directory"; root="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

# --- checks, before anything is changed ----------------------------------------------
if [ -n "$host" ] && ! [[ "$host" =~ ^[A-Za-z0-9._:-]+$ ]]; then
    die "--host: $host is not a host name or address"
fi
if [ -n "$port" ] && { ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || [ "$port" -gt 65535 ]; }; then
    die "--port: $port is not a TCP port (0-65535)"
fi
case "$prefix" in
    /?*) ;;
    *) die "--prefix: $prefix must be an absolute path other than /" ;;
esac
prefix="${prefix%/}"
if [ -n "$root" ]; then
    mkdir -p "$root"
    root="$(cd "$root" && pwd)"
    [ "$root" != "/" ] || root=""
fi
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...), or give --root DIR for a scratch install"
fi
if [ -n "$wheel" ]; then
    [ -f "$wheel" ] || die "--wheel: no such file: $wheel"
    source_spec="$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")"
else
    [ -f "$HERE/../setup.py" ] || die "no source tree around $0: give --wheel FILE"
    source_spec="$(cd "$HERE/.." && pwd)"
fi
"$python" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 8))' 2>/dev/null \
    || die "$python cannot create a virtual environment (Python 3.8+ with venv: apt-get install python3-venv)"
if [ -z "$root" ] && dpkg-query -W -f='${Status}' "$NAME" 2>/dev/null | grep -q "ok installed"; then
    die "the $NAME .deb is installed; use it, or remove it first (apt purge $NAME)"
fi

venv="$root$prefix"
unit="$root/etc/systemd/system/$NAME.service"
defaults="$root/etc/default/$NAME"
conf="$root/etc/$NAME/$NAME.conf"
link="$root/usr/local/bin/$NAME"

# --- the virtual environment --------------------------------------------------------
say "virtual environment $venv ($("$python" --version 2>&1))"
"$python" -m venv "$venv"
say "pip install $source_spec (dependencies from the package index)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$source_spec"
"$venv/bin/$NAME" --version

# The templates installed with the package (setup.py data_files) match its version;
# the ones next to this script are the fallback.
template() {
    local installed="$venv/share/$NAME/$1"
    if [ -f "$installed" ]; then echo "$installed"; else echo "$HERE/$1"; fi
}

# --- the unit, the settings ---------------------------------------------------------
say "unit $unit (ExecStart=$prefix/bin/$NAME run)"
mkdir -p "$(dirname "$unit")"
{
    echo "# Installed by packaging/install.sh: the .deb's unit with ExecStart in $prefix."
    sed -e "s#^ExecStart=/usr/bin/$NAME #ExecStart=$prefix/bin/$NAME #" \
        -e '/^Documentation=man:/d' "$(template "$NAME.service")"
} > "$unit.tmp"
grep -q "^ExecStart=$prefix/bin/$NAME run\$" "$unit.tmp" || die "the unit template has no ExecStart to rewrite"
chmod 644 "$unit.tmp"
mv -f "$unit.tmp" "$unit"

if [ ! -f "$defaults" ]; then
    say "environment file $defaults"
    install -D -m 644 "$(template "$NAME.default")" "$defaults"
fi
set_var() {  # set_var NAME VALUE: uncomment or replace NAME=... in the environment file
    if grep -q "^#\?$1=" "$defaults"; then
        sed -i "s#^\#\?$1=.*#$1=$2#" "$defaults"
    else
        echo "$1=$2" >> "$defaults"
    fi
    say "$defaults: $1=$2"
}
[ -z "$host" ] || set_var TEGRASTATS_API_HOST "$host"
[ -z "$port" ] || set_var TEGRASTATS_API_PORT "$port"

if [ ! -f "$conf" ]; then
    say "config file $conf (every setting commented with its default)"
    install -D -m 644 "$(template "$NAME.conf")" "$conf"
else
    say "config file $conf kept"
fi

if [ ! -e "$link" ] || [ "$(readlink "$link")" = "$prefix/bin/$NAME" ]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn "$prefix/bin/$NAME" "$link"
    say "command $link -> $prefix/bin/$NAME"
fi

# --- systemd ------------------------------------------------------------------------
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    say "systemctl daemon-reload; enable $NAME; restart $NAME"
    systemctl daemon-reload
    systemctl enable "$NAME"
    systemctl restart "$NAME"
    systemctl --no-pager --lines=5 status "$NAME" || true
else
    why="systemd is not running"
    [ -z "$root" ] || why="--root $root"
    say "$why: systemctl not run; on the target system, run:"
    printf '    %s\n' "systemctl daemon-reload" "systemctl enable $NAME" "systemctl restart $NAME"
fi
say "installed: $NAME in $prefix; logs: journalctl -u $NAME -f"
