//! The PromQL engine.
