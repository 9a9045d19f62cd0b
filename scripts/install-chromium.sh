#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (Playwright's own browser download does not
# work without internet access beyond the package registries). Idempotent.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" chromium fonts-dejavu-core
/usr/bin/chromium --version
