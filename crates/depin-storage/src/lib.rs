//! Owns: the storage runtime: encryption, erasure coding, the piece store, the piece protocol, the client's put and get.
//! Must not: decide what the chain accepts, or import another service.
//!
//! The storage service runtime: client-side encryption and erasure coding of objects into
//! content-addressed pieces, and the provider's piece store on disk. The rules a deal follows
//! on chain (placement, challenges, proof checks, payment) are in `depin_protocol::storage`;
//! this crate never decides what the chain accepts.

pub mod client;
pub mod crypto;
pub mod erasure;
pub mod object;
pub mod protocol;
pub mod provider;
pub mod store;
pub mod upload;

#[cfg(test)]
mod tests;
