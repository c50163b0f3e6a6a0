//! BFT consensus: commonware simplex orders blocks and marshal delivers finalized ones, in
//! height order, to the chain. This module adapts the chain to commonware's traits; the
//! consensus algorithm itself is commonware's, never ours.

pub mod application;
pub mod block;
pub mod certificate;
pub mod epochs;
mod evidence;
pub mod process;
pub mod validator;

#[cfg(test)]
mod tests;
