//! The storage service's consensus rules: deals, provider placement, epoch challenges,
//! possession-proof checks, payment from escrow and slashing. Pure: the runtime that encodes,
//! stores and serves pieces is `depin-storage`.

pub mod merkle;
