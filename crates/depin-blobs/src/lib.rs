//! Owns: content-addressed blobs between nodes: the store a node keeps them in, and the blob protocol that pushes, fetches and serves them.
//! Must not: know any service's rules or records; what a node wants or may serve is asked of the service through a trait.
//!
//! depin-blobs: the byte transport every service shares (compute's modules and inputs,
//! render's scene bundles and frames). A blob is named by its BLAKE3 and checked against it
//! before it is kept; an output (a job's result, a rendered piece) is named by a key its
//! service chooses and served only when the service allows it to the peer that asks.

pub mod folder;
pub mod store;
pub mod transfer;
