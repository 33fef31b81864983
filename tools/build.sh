#!/usr/bin/env bash
# Build the local Kubernetes control plane from Go modules into build/k8s/<dir>-<hash>/,
# where <hash> covers the module's go.mod, go.sum and its own *.go files: an unchanged
# module is not rebuilt, a changed main.go is.
#
#   tools/build.sh             # every module: tools/k8s (current release), tools/k8s-1.33, tools/kwok,
#                              # tools/pushgateway
#   tools/build.sh k8s kwok    # only these
#   FORCE=1 tools/build.sh     # rebuild even if the folder is complete
#
# Each build is run under /usr/bin/time -v (when present); build.log in the output folder
# keeps its wall time and peak memory. GOCACHE/GOMODCACHE stay at Go's defaults so a
# rebuild after a go.mod change only compiles what changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out_root=${CHAOSLAB_K8S_BUILD:-$root/build/k8s}
k8s_commands=(etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy hollow-node)

module_hash() { # go.mod, go.sum, then the module's own Go files in byte order of their names
  local files=("$1/go.mod" "$1/go.sum")
  mapfile -t -O 2 files < <(find "$1" -maxdepth 1 -name '*.go' | LC_ALL=C sort)
  cat "${files[@]}" | sha256sum | cut -c1-16
}

module_version() { # module_version DIR MODULE -> version from go.mod's require
  (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

k8s_ldflags() { # k8s_ldflags vX.Y.Z -> the -X flags upstream's hack/lib/version.sh sets
  local v=$1 major minor flags="-s -w" key val
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for kv in "gitVersion=$v" "gitMajor=$major" "gitMinor=$minor" "gitCommit=" \
      "gitTreeState=archive" "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
      key=${kv%%=*}; val=${kv#*=}
      flags+=" -X '$pkg.$key=$val'"
    done
  done
  printf '%s' "$flags"
}

timed() { # timed LOG CMD... : run CMD, append /usr/bin/time -v's report to LOG
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -v -a -o "$1" "${@:2}" >>"$1" 2>&1
  else
    "${@:2}" >>"$1" 2>&1
  fi
}

build_k8s() { # build_k8s MODDIR OUTDIR: one multi-call binary, one symlink per command
  local dir=$1 out=$2 version
  version=$(module_version "$dir" k8s.io/kubernetes) || return
  (cd "$dir" && timed "$out/build.log" go build -trimpath -ldflags="$(k8s_ldflags "$version")" \
    -o "$out/bin/k8s" .) || return
  for c in "${k8s_commands[@]}"; do ln -sfn k8s "$out/bin/$c"; done
  printf '{"kubernetes": "%s", "etcd": "%s"}\n' "$version" \
    "$(module_version "$dir" go.etcd.io/etcd/server/v3)" >"$out/versions.json"
}

build_kwok() { # build_kwok MODDIR OUTDIR: the kwok command at the version go.mod pins
  local dir=$1 out=$2 version
  version=$(module_version "$dir" sigs.k8s.io/kwok) || return
  (cd "$dir" && timed "$out/build.log" go build -trimpath \
    -ldflags="-s -w -X 'sigs.k8s.io/kwok/pkg/consts.Version=${version#v}'" \
    -o "$out/bin/kwok" sigs.k8s.io/kwok/cmd/kwok) || return
  kwok_stages "$dir" "$out/stages.yaml" || return
  printf '{"kwok": "%s"}\n' "$version" >"$out/versions.json"
}

# kwok_stages MODDIR FILE: kwok's own default stages, from the module at the pinned version
# (kwok refuses to start without stages; kwokctl passes these ones): nodes initialize,
# heartbeat through the node Lease, pods go Ready, complete and are deleted at once.
kwok_stages() {
  local src f
  src=$(cd "$1" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage || return
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    printf -- '---\n'
    cat "$src/$f.yaml"
  done >"$2"
}

build_pushgateway() { # build_pushgateway MODDIR OUTDIR: the Pushgateway export --push is tested on
  local dir=$1 out=$2 version
  version=$(module_version "$dir" github.com/prometheus/pushgateway) || return
  (cd "$dir" && timed "$out/build.log" go build -trimpath -ldflags="-s -w" \
    -o "$out/bin/pushgateway" github.com/prometheus/pushgateway) || return
  printf '{"pushgateway": "%s"}\n' "$version" >"$out/versions.json"
}

build_one() {
  local name=$1 dir=$root/tools/$1 out
  [[ -f $dir/go.mod ]] || { echo "tools/$name: no go.mod" >&2; return 1; }
  out=$out_root/$name-$(module_hash "$dir")
  if [[ -f $out/.complete && -z ${FORCE:-} ]]; then
    echo "tools/$name: up to date in ${out#"$root"/}"
    return 0
  fi
  rm -rf "$out.tmp" && mkdir -p "$out.tmp/bin"
  echo "tools/$name: building into ${out#"$root"/} (log: ${out#"$root"/}.tmp/build.log)"
  local rc=0
  case $name in
    kwok) build_kwok "$dir" "$out.tmp" || rc=$? ;;
    pushgateway) build_pushgateway "$dir" "$out.tmp" || rc=$? ;;
    *) build_k8s "$dir" "$out.tmp" || rc=$? ;;
  esac
  if [[ $rc -ne 0 ]]; then
    echo "tools/$name: build failed (exit $rc); last lines of ${out#"$root"/}.tmp/build.log:" >&2
    tail -n 30 "$out.tmp/build.log" >&2
    return "$rc"
  fi
  touch "$out.tmp/.complete"
  rm -rf "$out" && mv "$out.tmp" "$out"
  grep -E 'Elapsed \(wall|Maximum resident' "$out/build.log" | sed "s|^\s*|tools/$name: |" || true
}

if ! command -v go >/dev/null; then
  echo "tools/build.sh: go not found; the local Kubernetes control plane is not built" >&2
  exit 0
fi
mods=("$@")
if [[ ${#mods[@]} -eq 0 ]]; then
  for d in "$root"/tools/*/go.mod; do mods+=("$(basename "$(dirname "$d")")"); done
fi
for m in "${mods[@]}"; do build_one "$m"; done
