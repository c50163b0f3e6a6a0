//! The coverage service's pure rules (Helium-style proof of coverage): beacon and witness
//! checks, and the reward math. Not registered as a service yet: hotspot registration,
//! reports on chain and the epoch split are still to come.

pub mod rewards;
pub mod verify;

#[cfg(test)]
mod tests;
