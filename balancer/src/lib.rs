//! Tocsin balancer (work in progress).
