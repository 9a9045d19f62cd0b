#!/usr/bin/env bash
# apt-install.sh PACKAGE...: installs Debian packages without questions, with sudo only when
# not root. The install-*.sh scripts call it after checking that their program is missing.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
