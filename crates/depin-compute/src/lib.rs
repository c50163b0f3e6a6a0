//! Owns: the compute runtime: wasm jobs under wasmtime, input bundles, the blob store and protocol.
//! Must not: decide what the chain accepts, or import another service.
//!
//! depin-compute: the compute service's runtime. Runs a job's WebAssembly module (WASI
//! preview 1) under wasmtime with deterministic fuel metering, a memory cap, a fixed clock
//! and seeded randomness, and reports the outcome replicas commit to. Decides nothing the
//! chain accepts: settlement is in `depin_protocol::compute`. Also carries a job's bytes:
//! the input bundle format, the provider's blob store and the blob protocol on depin-net.

pub mod blobs;
pub mod bundle;
#[cfg(feature = "test-utils")]
pub mod examples;
pub mod runner;
pub mod transfer;

#[cfg(test)]
mod tests;
