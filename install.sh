#!/usr/bin/env bash
# One command that installs everything chaoslab needs on a bare Debian 12 machine
# with Python >= 3.11: the lab daemons from Debian packages, fonts for Korean plot
# labels, and chaoslab itself (editable, with test and notebook extras).
#
#   ./install.sh            # apt packages (needs root or sudo) + pip install -e .[all]
#   ./install.sh --no-apt   # only the Python part (the lab will then be unavailable)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  keepalived bird2 frr haproxy nginx-light iptables conntrack iproute2 arping
  procps psmisc fonts-noto-cjk time
)

if [[ "${1:-}" != "--no-apt" ]]; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  # Keep the packaged system services from starting: the lab runs its own
  # instances with its own configs inside network namespaces.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
    $SUDO chmod +x $policy
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  if [[ $created_policy -eq 1 ]]; then $SUDO rm -f $policy; fi
fi

PY=${PYTHON:-python3}
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -e ".[all]"
# The local Kubernetes control plane (chaoslab cluster): built from Go modules into
# build/k8s/, rebuilt only when tools/<module>/go.mod, go.sum or its *.go change. Cold: see
# docs/local-cluster.md; warm: seconds. tools/k8s-1.33 is built on request only.
if command -v go >/dev/null; then
  tools/build.sh k8s kwok pushgateway
else
  echo "go not found: skipping the local Kubernetes control plane (chaoslab cluster)"
fi
echo "chaoslab installed: $("$PY" -m chaoslab --version)"
