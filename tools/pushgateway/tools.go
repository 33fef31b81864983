//go:build tools

// Package tools pins the Prometheus Pushgateway that `chaoslab export --push` is tested
// against; tools/build.sh builds its command from the module cache.
package tools

import _ "github.com/prometheus/pushgateway"
