//! Pure-Rust core of hippo_dask: row maps between the rows of an operator's input and
//! output, their compact encodings, batched lineage lookups and composition.
//!
//! Nothing here knows about Python; `hippo-py` only converts types and errors.
//!
//! * [`RowMap`]: the nine row-map kinds (identity, offset, select, permutation, expand,
//!   group, pair, window, all), backward/forward queries and composition.
//! * [`encode_ids`] / [`decode_ids`] / [`encode_fragment`] / [`decode_fragment`]:
//!   checksummed containers of int64 arrays, each stored with its smallest codec.
//! * [`group_csr`], [`isin_sorted`]: O(n) helpers the Python layer needs.
//! * [`trace`]: the trace engine, the set algebra of every backward / forward query step
//!   (slot-tuple sets, sorted id sets, group-membership lookups, window ranges, forward
//!   predicates).

mod bits;
mod bitset;
mod codec;
mod container;
mod error;
mod ids;
mod rowmap;
mod rowmap_codec;
mod search;
pub mod trace;

#[cfg(test)]
mod robustness_tests;
// Lets the shared test helpers in tests/common name this crate from inside it too.
#[cfg(test)]
extern crate self as hippo_core;

pub use container::checksum;
pub use error::{CoreError, Result};
pub use ids::{decode_fragment, decode_ids, encode_fragment, encode_ids};
pub use rowmap::{MapKind, RowMap};
pub use search::{group_csr, isin_sorted, Csr};
