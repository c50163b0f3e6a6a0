//! Storage throughput: `depin storage put` and `get` of a random file across local providers
//! (a devnet on loopback), beside the single-core pipeline limit (encrypt + erasure-code + hash
//! of the same bytes in memory) and a plain file copy on the same disk; and possession-proof
//! generation and verification per second. Prints a table.
//! Run: `cargo bench -p depin-cli --bench storage`.
//! Environment: BENCH_MIB (file size, default 1024), BENCH_PROVIDERS (default 8).

use depin_protocol::storage::ErasureProfile;
use depin_protocol::storage::merkle;
use depin_storage::erasure::ReedSolomon;
use depin_storage::object::{Seal, SegmentCoder, plain_segment_bytes};
use depin_storage::store::PieceStore;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

mod common;

use common::{depin_json, env_u64, start_devnet};

const BIN: &str = env!("CARGO_BIN_EXE_depin");

fn depin(rpc: &str, args: &[&str]) -> Value {
    depin_json(BIN, rpc, args)
}

fn random_file(path: &Path, bytes: u64) {
    let mut file = std::fs::File::create(path).expect("create");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).expect("write");
        left -= n as u64;
    }
    file.sync_all().expect("sync");
}

fn main() {
    let mib = env_u64("BENCH_MIB", 1024);
    let providers = env_u64("BENCH_PROVIDERS", 8);
    let bytes = mib << 20;
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("input.bin");
    random_file(&input, bytes);
    let data = std::fs::read(&input).expect("read");
    println!("storage: {mib} MiB random file, {providers} providers on loopback, this machine");
    println!("| what | MiB/s | seconds |");
    println!("|---|---:|---:|");

    // Single-core pipeline limit: seal, code and hash every segment, in memory.
    let profile = ErasureProfile::DEVNET;
    let coder = ReedSolomon::new(
        usize::from(profile.data_pieces),
        usize::from(profile.total_pieces),
    )
    .expect("profile");
    let per_segment = plain_segment_bytes(64 << 20, true).expect("segment size") as usize;
    let secret = [7u8; 32];
    // Buffers reused from segment to segment, as the client does.
    let mut segments = SegmentCoder::new(&coder);
    let started = Instant::now();
    for (i, plain) in data.chunks(per_segment).enumerate() {
        let seal = Seal {
            owner_secret: &secret,
            nonce: [i as u8; 16],
        };
        let coded = segments.code(plain, Some(seal)).expect("code");
        std::hint::black_box(coded.roots);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| pipeline limit (encrypt + encode 4/8 + hash, 1 core) | {:.0} | {secs:.2} |",
        mib as f64 / secs
    );

    // Plain file copy on the same disk.
    let copy = tmp.path().join("copy.bin");
    let started = Instant::now();
    std::fs::copy(&input, &copy).expect("copy");
    std::fs::File::open(&copy)
        .and_then(|f| f.sync_all())
        .expect("sync");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| file copy (same disk, fsync) | {:.0} | {secs:.2} |",
        mib as f64 / secs
    );
    let _ = std::fs::remove_file(&copy);

    // Put and get through a devnet.
    let (_devnet, state) = start_devnet(BIN, &tmp.path().join("net"), providers as u16, 500);
    let rpc = state["nodes"][0]["api_url"]
        .as_str()
        .expect("api")
        .to_string();
    let key = state["user_key_file"].as_str().expect("key").to_string();
    depin(&rpc, &["dc", "buy", "--amount", "1000", "--key", &key]);
    let input_s = input.to_string_lossy().into_owned();
    let started = Instant::now();
    let stored = depin(
        &rpc,
        &["storage", "put", &input_s, "--epochs", "100", "--key", &key],
    );
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| depin storage put (encrypted, until the deal is active) | {:.0} | {secs:.2} |",
        mib as f64 / secs
    );
    let id = stored["id"].as_str().expect("id").to_string();
    let output = tmp.path().join("output.bin");
    let output_s = output.to_string_lossy().into_owned();
    for (extra, label) in [
        ("1", "depin storage get (k + 1 asked, verified, decrypted)"),
        ("0", "depin storage get --extra 0 (k asked)"),
    ] {
        let started = Instant::now();
        depin(
            &rpc,
            &[
                "storage", "get", &id, "-o", &output_s, "--key", &key, "--extra", extra,
            ],
        );
        let secs = started.elapsed().as_secs_f64();
        println!("| {label} | {:.0} | {secs:.2} |", mib as f64 / secs);
        assert_eq!(
            std::fs::read(&output).expect("output"),
            data,
            "get returned other bytes"
        );
    }

    // Possession proofs: one random chunk of a 16 MiB piece, from disk, and their checks.
    let store = PieceStore::open(&tmp.path().join("store"), 1 << 30).expect("store");
    let piece = &data[..(16 << 20).min(data.len())];
    let root = *blake3::hash(piece).as_bytes();
    store.put(&root, piece).expect("put piece");
    let chunks = merkle::chunk_count(piece.len() as u64);
    let rounds = 20_000u64;
    let started = Instant::now();
    let proofs: Vec<_> = (0..rounds)
        .map(|i| {
            let index = i.wrapping_mul(2_654_435_761) % chunks;
            (index, store.prove_chunk(&root, index).expect("prove"))
        })
        .collect();
    let prove_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (index, proof) in &proofs {
        assert!(merkle::verify_chunk(
            &root,
            piece.len() as u64,
            *index,
            proof
        ));
    }
    let verify_secs = started.elapsed().as_secs_f64();
    println!();
    println!("| proofs (16 MiB piece) | per second |");
    println!("|---|---:|");
    println!(
        "| generate (read group from disk + outboard) | {:.0} |",
        rounds as f64 / prove_secs
    );
    println!("| verify (pure) | {:.0} |", rounds as f64 / verify_secs);
}
