//! Go text/template dialect used by Prometheus.
