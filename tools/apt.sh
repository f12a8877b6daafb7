# Sourced by the scripts that install Debian packages (plugin/build.sh, envoy/setup.sh,
# js/test.sh, bench/run.sh): one way to get root and one apt-get update per run.
#
#   can_install           true when packages can be installed here (apt-get, and root or sudo)
#   apt_install PKG...    installs the packages (apt-get update first, once), quietly

# Runs a command as root: directly when we are root, else through sudo (never prompting).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

can_install() {
  command -v apt-get >/dev/null || return 1
  [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }
}

_apt_updated=0
apt_install() {
  if [ "$_apt_updated" = 0 ]; then
    as_root apt-get update -qq >&2
    _apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}
