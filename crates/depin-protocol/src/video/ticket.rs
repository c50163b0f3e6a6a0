//! Probabilistic micropayment tickets (Livepeer's): a ticket is worth its face value with a
//! small probability, so one on-chain redemption pays for many segments. Whether it wins is
//! decided by the hash of the sender's signature and the recipient's random number, which the
//! recipient committed to (by its hash) before the sender signed: neither side alone can
//! choose the outcome.

use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Hash, Signature};
use serde::{Deserialize, Serialize};

/// A win probability that (all but) always wins: only a win hash of all ones loses.
pub const WIN_PROB_ALWAYS: u64 = u64::MAX;

/// One ticket, signed by its sender over [`ticket_message`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Ticket {
    /// The orchestrator paid if it wins.
    pub recipient: Address,
    /// The broadcaster whose deposit pays.
    pub sender: Address,
    pub face_value_dc: u64,
    /// Chance of winning out of 2⁶⁴: the ticket wins when the first 8 bytes of its win hash,
    /// read big-endian, are below this.
    pub win_prob: u64,
    /// Rises with every ticket the sender makes against one `recipient_rand_hash`, so no two
    /// tickets are the same.
    pub sender_nonce: u32,
    /// The recipient's commitment to the random number it reveals when it redeems.
    pub recipient_rand_hash: Hash,
    /// The last height at which it can be redeemed.
    pub expiry_height: u64,
}

/// The bytes a sender signs: the ticket under a domain tag and the chain id, so a ticket
/// of one network is worthless on another.
pub fn ticket_message(chain_id: &str, ticket: &Ticket) -> Vec<u8> {
    let mut message = b"depin video ticket\0".to_vec();
    message.extend_from_slice(&(chain_id.len() as u32).to_le_bytes());
    message.extend_from_slice(chain_id.as_bytes());
    message.extend_from_slice(&depin_types::encode(ticket));
    message
}

/// A ticket's identity: redeemed tickets are remembered by it until they expire.
pub fn ticket_id(ticket: &Ticket) -> Hash {
    Hash::tagged("depin video ticket id", &[&depin_types::encode(ticket)])
}

/// The hash that decides a ticket: the sender's signature and the recipient's revealed
/// random number.
pub fn win_hash(signature: &Signature, recipient_rand: &Hash) -> Hash {
    Hash::tagged(
        "depin video ticket win",
        &[&signature.0, recipient_rand.as_bytes()],
    )
}

/// Whether a ticket with this signature and revealed random number wins.
pub fn ticket_wins(signature: &Signature, recipient_rand: &Hash, win_prob: u64) -> bool {
    let hash = win_hash(signature, recipient_rand);
    let mut head = [0u8; 8];
    head.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_be_bytes(head) < win_prob
}

/// What a ticket is worth on average, in billionths of a DC (rounded down).
pub fn expected_value_dc(face_value_dc: u64, win_prob: u64) -> u128 {
    // face × prob × 10⁹ / 2⁶⁴ without overflow: split the product at 2⁶⁴.
    let product = u128::from(face_value_dc) * u128::from(win_prob);
    let (high, low) = (product >> 64, product & u128::from(u64::MAX));
    high * 1_000_000_000 + ((low * 1_000_000_000) >> 64)
}

/// The win probability that makes a ticket of `face_value_dc` worth `pixels` at
/// `price_dc_per_gigapixel` on average (rounded up, so the recipient is never short), or
/// `None` when that is more than the face value (the sender must raise it).
pub fn win_prob_for(pixels: u64, price_dc_per_gigapixel: u64, face_value_dc: u64) -> Option<u64> {
    if face_value_dc == 0 {
        return None;
    }
    // value / face × 2⁶⁴, with value = pixels × price / 10⁹, by long division in two 32-bit
    // steps (the remainder stays below the denominator, under 2⁹⁴, so nothing overflows).
    let value = u128::from(pixels).checked_mul(u128::from(price_dc_per_gigapixel))?;
    let denominator = u128::from(face_value_dc) * 1_000_000_000;
    if value > denominator {
        return None;
    }
    if value == denominator {
        return Some(u64::MAX);
    }
    let (mut quotient, mut remainder) = (0u128, value);
    for _ in 0..2 {
        remainder <<= 32;
        quotient = (quotient << 32) | (remainder / denominator);
        remainder %= denominator;
    }
    let rounded_up = quotient + u128::from(remainder > 0);
    Some(u64::try_from(rounded_up).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_win_probability_pays_the_price_on_average() {
        // 2 s of a 4-rung 1080p ladder: about 218 million output pixels.
        let pixels = 217_958_400;
        let p = win_prob_for(pixels, 300, 10_000).expect("under the face value");
        let ev = expected_value_dc(10_000, p);
        let owed = u128::from(pixels) * 300;
        assert!(ev >= owed && ev - owed < 1_000, "{ev} against {owed}");
        assert_eq!(
            win_prob_for(1_000_000_000, 10, 9),
            None,
            "worth more than the face"
        );
        assert_eq!(win_prob_for(1, 1, 0), None);
        assert_eq!(
            win_prob_for(1_000_000_000, 10, 10),
            Some(u64::MAX),
            "worth the face value: a certain win"
        );
    }

    #[test]
    fn wins_follow_the_probability() {
        let key = depin_types::Keypair::from_seed(b"sender");
        let rand = Hash::of(b"recipient random");
        let mut wins = 0;
        for n in 0..4000u32 {
            let sig = key.sign(&n.to_le_bytes());
            if ticket_wins(&sig, &rand, u64::MAX / 4) {
                wins += 1;
            }
            assert!(!ticket_wins(&sig, &rand, 0), "probability 0 never wins");
        }
        assert!((800..1200).contains(&wins), "{wins} of 4000 at 1/4");
    }
}
