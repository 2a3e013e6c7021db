// Wrapper module: pins the Prometheus Operator's module, whose example/prometheus-operator-crd/ holds the published
// CRDs of ServiceMonitor and PrometheusRule. tests/integration/test_helm.py installs them into its API server so
// that the chart's and deploy/monitoring/'s objects are validated against their real schema. Nothing is built.
module disync-operator.local/hack/tools/monitoring-crds

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0 // indirect
