#!/usr/bin/env bash
# Install the Debian packages listed in scripts/system_deps.txt that are missing. Idempotent and quiet when
# everything is there. Needs root (or sudo) and access to Debian's package archive.
set -euo pipefail
list="$(dirname "$0")/system_deps.txt"
missing=()
while read -r pkg; do
  pkg="${pkg%%#*}"; pkg="$(echo "$pkg" | xargs)"
  [[ -z "$pkg" ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < "$list"
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Services that Debian would start on install (orthanc, postgresql) stay stopped: the tests start their own.
policy_created=0
if [[ ! -e /usr/sbin/policy-rc.d && -z "$SUDO" ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_created=1
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[[ $policy_created -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
echo "installed: ${missing[*]}"
