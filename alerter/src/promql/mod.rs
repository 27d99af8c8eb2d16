//! The PromQL engine: Prometheus 2.x query semantics over an in-memory sample store.
//!
//! Layout:
//! - [`engine`]: the entry points — [`Engine`], [`EngineOptions`], [`ParsedQuery`]. Queries
//!   are parsed with `promql-parser`, checked against size/depth limits, then evaluated.
//! - `eval`: the evaluator core — selectors (lookback, staleness, `offset`, `@`), subqueries,
//!   unary minus, the sample limit; every query is evaluated one timestamp at a time.
//! - `functions` / `range_funcs`: function calls over instant vectors and over range vectors.
//! - `aggregate`, `binary`: aggregation operators; binary operators and vector matching.
//! - `calendar`: Go-exact UTC calendar fields for the date functions.
//! - `stats`: numeric helpers that reproduce Go's and Prometheus's exact arithmetic.
//! - [`store`]: the [`Store`] trait the engine reads from, and [`MemStore`].
//! - [`chunk`]: compressed chunks (integer or XOR values) and [`ChunkedStore`], a compact [`Store`].
//! - [`table`]: [`SeriesTable`], chunked series with a hash index and an inverted index.
//! - [`labels`]: the [`Labels`] set and its stable [`Fingerprint`] (the future alert identity).
//! - [`value`], [`error`]: results and [`QueryError`].
//!
//! Invariants: the engine never reads the clock (callers pass timestamps); every query is
//! bounded by [`EngineOptions`] (samples held, nesting depth, text size, range steps); an
//! unimplemented function is a [`QueryError::Unsupported`], never a guess.

mod aggregate;
mod binary;
mod calendar;
pub mod chunk;
pub mod engine;
pub mod error;
mod eval;
mod functions;
pub mod labels;
mod range_funcs;
mod stats;
pub mod store;
pub mod table;
pub mod value;

pub use chunk::{Chunk, ChunkedStore};
pub use engine::{Engine, EngineOptions, ParsedQuery};
pub use error::QueryError;
pub use labels::{Fingerprint, Labels};
pub use store::{MemStore, Point, STALE_NAN, Series, Store, StoreError, is_stale};
pub use table::{SeriesId, SeriesTable};
pub use value::{Sample, Value};

#[cfg(test)]
mod tests;
