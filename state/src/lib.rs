//! Tocsin's replicated state store.
