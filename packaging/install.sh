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
  --python PY     the Python that creates the venv: 3.8 or later, with venv and ensurepip
                  (default: python3 if it is one, else the newest of python3.19 ...
                  python3.8 on PATH that is; on Ubuntu 18.04 / JetPack 4, whose python3
                  is 3.6: sudo apt install python3.8 python3.8-venv)
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

host="" port="" wheel="" python="" prefix="/opt/$NAME" root=""
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

# --- the Python that creates the venv --------------------------------------------------
NEWEST_MINOR=19  # python3.19 ... python3.8 are looked for, newest first
JETPACK4_HINT="On Ubuntu 18.04 (JetPack 4): sudo apt install python3.8 python3.8-venv, then run this script again"

# probe PY: sets py_version ("3.6.9"; empty when PY does not run) and returns 0 when PY
# is Python 3.8 or later and can create a virtual environment (import venv, ensurepip),
# 3 when it is older, 4 when it lacks venv or ensurepip (Debian's pythonX.Y-venv), 1 when
# it does not run. The probe itself runs on any Python, 2.7 included.
probe() {
    local status=0
    py_version=""
    command -v "$1" >/dev/null 2>&1 || return 1
    py_version="$("$1" -c '
import sys
sys.stdout.write("%d.%d.%d\n" % tuple(sys.version_info[:3]))
sys.stdout.flush()
if sys.version_info < (3, 8):
    sys.exit(3)
try:
    import venv, ensurepip
except ImportError:
    sys.exit(4)
' 2>/dev/null)" || status=$?
    [[ "$py_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { py_version=""; return 1; }
    case "$status" in 0|3|4) return "$status" ;; *) return 1 ;; esac
}

# venv_package 3.10.12 -> python3.10-venv (the Debian/Ubuntu package with venv, ensurepip)
venv_package() { local v="$1"; echo "python${v%.*}-venv"; }

# find_python: sets $python, or dies with one line saying what to install. An explicit
# --python is used as given; otherwise python3, else the newest python3.N on PATH.
find_python() {
    local status=0 candidate minor why="" novenv="" novenv_version=""
    if [ -n "$python" ]; then
        probe "$python" || status=$?
        case "$status" in
            0) say "using $python (Python $py_version)"; return ;;
            3) die "--python $python is Python $py_version; $NAME needs Python 3.8 or newer" \
                   "(on Ubuntu 18.04 / JetPack 4: sudo apt install python3.8 python3.8-venv, then --python python3.8)" ;;
            4) die "--python $python (Python $py_version) cannot create a virtual environment: it has no" \
                   "venv/ensurepip; sudo apt install $(venv_package "$py_version"), then run this script again" ;;
            *) die "--python $python: no such Python (not found, or it does not run)" ;;
        esac
    fi
    probe python3 || status=$?
    case "$status" in
        0) python=python3; say "using python3 (Python $py_version)"; return ;;
        3) why="python3 is Python $py_version" ;;
        4) why="python3 (Python $py_version) has no venv/ensurepip"
           novenv=python3 novenv_version="$py_version" ;;
        *) why="there is no python3" ;;
    esac
    for ((minor = NEWEST_MINOR; minor >= 8; minor--)); do
        candidate="python3.$minor"
        status=0
        probe "$candidate" || status=$?
        if [ "$status" -eq 0 ]; then
            python="$candidate"
            say "using $candidate (Python $py_version): $why"
            return
        fi
        if [ "$status" -eq 4 ] && [ -z "$novenv" ]; then
            novenv="$candidate" novenv_version="$py_version"
        fi
    done
    if [ -n "$novenv" ]; then
        local found="$novenv (Python $novenv_version) has no venv/ensurepip"
        [ "$novenv" = python3 ] || found="$why and $found"
        die "needs Python 3.8 or newer with venv; $found: sudo apt install" \
            "$(venv_package "$novenv_version"), then run this script again"
    fi
    case "$why" in
        "python3 is "*) why="python3 here is ${why#python3 is }" ;;
        *) why="there is no python3 here" ;;
    esac
    die "needs Python 3.8 or newer with venv; $why. $JETPACK4_HINT"
}

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
find_python
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
