#!/usr/bin/env bash
# Installs Debian's redis-server for the local Letta stack (background streams and resumable
# runs need Redis on the Letta server). The stack runs its own redis-server on its own port
# and data folder under .letta/; the package's system service is left as it is. Idempotent.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" redis-server
redis-server --version
