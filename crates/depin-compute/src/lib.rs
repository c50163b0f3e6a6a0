//! Owns: the compute runtime: wasm jobs under wasmtime and their input and result bundles.
//! Must not: decide what the chain accepts, or import another service.
//!
//! depin-compute: the compute service's runtime. Runs a job's WebAssembly module (WASI
//! preview 1) under wasmtime with deterministic fuel metering, a memory cap, a fixed clock
//! and seeded randomness, and reports the outcome replicas commit to. Decides nothing the
//! chain accepts: settlement is in `depin_protocol::compute`. Also the input bundle format;
//! the bytes travel by `depin-blobs`.

pub mod bundle;
#[cfg(feature = "test-utils")]
pub mod examples;
pub mod runner;

#[cfg(test)]
mod tests;
