//! End-to-end tests of the node over real HTTP on 127.0.0.1: a validator whose blocks the test
//! produces deterministically (no timed loop), and a follower started with `run_until`.

use super::*;
use depin_chain::SoloProducer;
use depin_protocol::tx::{GeoLocation, ServiceOffer};
use depin_protocol::{Action, Block, SignedTransaction, Transaction};
use depin_types::{Address, Amount};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

/// One whole token in base units (devnet genesis: 6 decimals).
const DPN: u128 = 1_000_000;
const USER_FUNDS: u128 = 10_000 * DPN;
const VALIDATOR_FUNDS: u128 = 1_000 * DPN;
/// Comfortably above the minimum fee (1000 + 1 per byte) of every ordinary test transaction.
const FEE: u128 = 10_000;
const GENESIS_TIME_MS: u64 = 1_700_000_000_000;

/// Writes the genesis and key files a node needs into `dir` and returns its configuration.
fn node_config(
    dir: &Path,
    genesis: &Genesis,
    key: &Keypair,
    role: Role,
    api_listen: SocketAddr,
    upstream: Option<String>,
) -> NodeConfig {
    let genesis_file = dir.join("genesis.toml");
    std::fs::write(&genesis_file, genesis.to_toml()).expect("write genesis");
    let key_file = dir.join("key.json");
    config::write_key_file(&key_file, key).expect("write key");
    NodeConfig {
        role,
        data_dir: dir.join("data"),
        genesis_file,
        key_file,
        api_listen,
        p2p_listen: "127.0.0.1:0".parse().expect("addr"),
        upstream,
        validator_peers: Vec::new(),
        net_listen: None,
        bootstrap: Vec::new(),
        storage_capacity_bytes: 0,
        storage_dir: None,
        compute_fault: None,
        render_blender: None,
        render_device: "CPU".into(),
        render_threads: 0,
        render_scene_keep_s: 300,
        render_fault: None,
        video_ffmpeg: None,
        video_threads: 1,
        video_fault: None,
        gateway_listen: None,
        gateway_eui: None,
        log: "info".into(),
    }
}

/// A validator node serving its API on an ephemeral port; blocks are produced only when the
/// test asks, at deterministic timestamps.
struct Fixture {
    _dir: tempfile::TempDir,
    node: Arc<Node>,
    url: String,
    genesis: Genesis,
    validator: Keypair,
    user: Keypair,
}

impl Fixture {
    async fn start(epoch_blocks: u64) -> Fixture {
        Fixture::start_with(epoch_blocks, false).await
    }

    /// With `net`, the validator also joins the libp2p service network on an ephemeral port
    /// (serving blocks to followers and taking gossiped transactions).
    async fn start_with(epoch_blocks: u64, net: bool) -> Fixture {
        Fixture::start_configured(epoch_blocks, net, |_| {}).await
    }

    async fn start_configured(
        epoch_blocks: u64,
        net: bool,
        tweak: impl FnOnce(&mut NodeConfig),
    ) -> Fixture {
        let validator = Keypair::from_seed(b"validator");
        let user = Keypair::from_seed(b"user");
        let mut genesis = Genesis::devnet(
            "depin-node-test",
            GENESIS_TIME_MS,
            &[validator.address()],
            validator.address(),
            &[
                (user.address(), Amount(USER_FUNDS)),
                (validator.address(), Amount(VALIDATOR_FUNDS)),
            ],
        );
        genesis.chain.epoch_blocks = epoch_blocks;
        // Only followers poll at this pace; the test produces blocks itself.
        genesis.chain.block_interval_ms = 100;
        let dir = tempfile::tempdir().expect("tempdir");
        let unused = "127.0.0.1:0".parse().expect("addr");
        let mut config = node_config(
            dir.path(),
            &genesis,
            &validator,
            Role::Validator,
            unused,
            None,
        );
        if net {
            config.net_listen = Some(unused);
        }
        tweak(&mut config);
        let node = Arc::new(Node::open(config).expect("open node"));
        if net {
            start_service_network(&node).await.expect("service network");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let app = router(node.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fixture {
            _dir: dir,
            node,
            url,
            genesis,
            validator,
            user,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Produces and commits the next block as the producer loop would, recording metrics.
    async fn produce(&self) -> Block {
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            let interval_ms = node.chain().protocol().genesis().chain.block_interval_ms;
            let height = node.chain().head().height + 1;
            let timestamp_ms = GENESIS_TIME_MS + height * interval_ms;
            let block = SoloProducer::new(node.app.clone(), node.key.clone())
                .produce(timestamp_ms)
                .expect("produce block");
            node.metrics.observe_block(&node, &block);
            block
        })
        .await
        .expect("producer task")
    }

    fn tx(&self, signer: &Keypair, nonce: u64, action: Action) -> SignedTransaction {
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: signer.address(),
            nonce,
            fee: Amount(FEE),
            action,
        }
        .sign(signer)
    }

    /// POSTs a transaction that must be accepted and returns its hash.
    async fn submit(&self, tx: &SignedTransaction) -> String {
        let (status, body) = post_tx(&self.url, &hex::encode(tx.to_bytes())).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "pending");
        assert_eq!(body["hash"], tx.hash().to_string());
        tx.hash().to_string()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        get_json(self.url(path)).await
    }

    /// GETs a path that must answer 200 and returns the body.
    async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn account(&self, address: &Address) -> Value {
        self.get_ok(&format!("/v1/accounts/{address}")).await
    }
}

fn transfer(to: Address, amount: u128) -> Action {
    Action::Transfer {
        to,
        amount: Amount(amount),
    }
}

fn storage_offer() -> Vec<ServiceOffer> {
    vec![ServiceOffer {
        service: depin_protocol::storage::SERVICE,
        capacity: 1 << 40,
        price_dc_per_unit: 3,
    }]
}

/// An amount as the API renders it (a string of base units).
fn amount(value: &Value) -> u128 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an amount: {value}"))
}

/// One HTTP exchange off the async runtime: the status and the body text, or why none came.
async fn request(url: String, body: Option<Value>) -> Result<(u16, String), String> {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let sent = match body {
            Some(body) => agent.post(&url).send_json(&body),
            None => agent.get(&url).call(),
        };
        let mut response = sent.map_err(|e| format!("{url}: {e}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        Ok((response.status().as_u16(), text))
    })
    .await
    .expect("http task")
}

async fn get_text(url: String) -> (u16, String) {
    request(url, None).await.expect("GET")
}

async fn get_json(url: String) -> (u16, Value) {
    let (status, text) = get_text(url).await;
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

async fn post_tx(base_url: &str, tx_hex: &str) -> (u16, Value) {
    let body = json!({ "tx": tx_hex });
    let (status, text) = request(format!("{base_url}/v1/txs"), Some(body))
        .await
        .expect("POST");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

#[track_caller]
fn assert_error(response: &(u16, Value), status: u16, code: &str) {
    let (got, body) = response;
    assert_eq!(
        (*got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Polls a JSON endpoint until `done` holds (tolerating a server that is not up yet), for at
/// most ten seconds.
async fn wait_for(url: String, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((200, text)) = request(url.clone(), None).await
            && let Ok(body) = serde_json::from_str::<Value>(&text)
            && done(&body)
        {
            return body;
        }
        assert!(Instant::now() < deadline, "timed out waiting on {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_is_accepted_committed_and_visible() {
    let f = Fixture::start(1000).await;
    let recipient = Keypair::from_seed(b"recipient").address();
    let tx = f.tx(&f.user, 0, transfer(recipient, 5 * DPN));
    let hash = f.submit(&tx).await;
    let pending = f.get_ok(&format!("/v1/txs/{hash}")).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(f.get_ok("/v1/status").await["mempool_txs"], 1);

    let block = f.produce().await;
    assert_eq!(block.header.height, 1);
    let committed = f.get_ok(&format!("/v1/txs/{hash}")).await;
    assert_eq!(committed["status"], "committed");
    assert_eq!(committed["height"], 1);
    assert_eq!(committed["index"], 0);
    assert_eq!(committed["tx"]["kind"], "transfer");
    let events = committed["events"].as_array().expect("events");
    assert!(events.contains(
        &json!({"type": "fee_paid", "to": f.validator.address(), "amount": FEE.to_string()})
    ));
    assert!(events.contains(&json!({"type": "transfer", "from": f.user.address(), "to": recipient, "amount": (5 * DPN).to_string()})));

    let user = f.account(&f.user.address()).await;
    assert_eq!(amount(&user["balance"]), USER_FUNDS - 5 * DPN - FEE);
    assert_eq!(user["nonce"], 1);
    assert_eq!(amount(&f.account(&recipient).await["balance"]), 5 * DPN);
    let validator = f.account(&f.validator.address()).await;
    assert_eq!(amount(&validator["balance"]), VALIDATOR_FUNDS + FEE);
    assert_eq!(validator["is_validator"], true);

    let by_height = f.get_ok("/v1/blocks/1").await;
    assert_eq!(by_height["hash"], block.hash().to_string());
    assert_eq!(by_height["txs"][0]["hash"], hash);
    assert_eq!(by_height["header"]["height"], 1);
    let by_hash = f.get_ok(&format!("/v1/blocks/{}", block.hash())).await;
    let latest = f.get_ok("/v1/blocks/latest").await;
    assert_eq!(by_hash, by_height);
    assert_eq!(latest, by_height);
    let status = f.get_ok("/v1/status").await;
    assert_eq!(status["height"], 1);
    assert_eq!(status["head_hash"], block.hash().to_string());
    assert_eq!(status["state_root"], block.header.state_root.to_string());
    assert_eq!(status["mempool_txs"], 0);

    let raw = f.get_ok("/v1/blocks/1/raw").await;
    let bytes = hex::decode(raw["block"].as_str().expect("hex")).expect("block hex");
    let max_block_bytes = f.genesis.chain.max_block_bytes as usize;
    let decoded = Block::from_bytes(&bytes, max_block_bytes).expect("decode raw block");
    assert_eq!(decoded, block);
    assert_eq!(decoded.txs, vec![tx]);
    assert!(!raw["finality"].as_str().expect("finality hex").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transactions_are_refused_with_their_code_and_leave_state_alone() {
    let f = Fixture::start(1000).await;
    let user = &f.user;
    let recipient = Keypair::from_seed(b"recipient").address();
    let first = f.tx(user, 0, transfer(recipient, DPN));
    f.submit(&first).await;
    f.produce().await;

    // The oracle price: refused from the user, accepted from the oracle key (the validator),
    // and a second submission of the pending update is a conflict.
    let set_price = |price_usd_micro| Action::SetOraclePrice { price_usd_micro };
    let by_user = f.tx(user, 1, set_price(7));
    let by_user = post_tx(&f.url, &hex::encode(by_user.to_bytes())).await;
    assert_error(&by_user, 403, "unauthorized");
    let update = f.tx(&f.validator, 0, set_price(2_500_000));
    f.submit(&update).await;
    let again = post_tx(&f.url, &hex::encode(update.to_bytes())).await;
    assert_error(&again, 409, "already_known");
    f.produce().await;
    // The report counts from the epoch boundary, one bounded step (25% on devnet) at a time.
    let supply = f.get_ok("/v1/supply").await;
    assert_eq!(supply["token_price_usd_micro"], 1_000_000);
    assert_eq!(supply["price_updated_height"], 0);
    assert_eq!(supply["next_token_price_usd_micro"], 1_250_000);
    assert_eq!(supply["oracle_reports"], 1);

    let mut bad_signature = f.tx(user, 1, transfer(recipient, DPN));
    bad_signature.signature = Keypair::from_seed(b"mallory").sign(b"something else");
    let mut wrong_chain = f.tx(user, 1, transfer(recipient, DPN));
    wrong_chain.tx.chain_id = "another-network".into();
    let wrong_chain = wrong_chain.tx.sign(user);
    let mut cheap = f.tx(user, 1, transfer(recipient, DPN));
    cheap.tx.fee = Amount(1);
    let cheap = cheap.tx.sign(user);
    let stranger = Keypair::from_seed(b"stranger");
    // A service transaction padded to exactly one byte over the limit: still inside the
    // HTTP body limit, so the refusal is the protocol's.
    let max_tx_bytes = f.genesis.chain.max_tx_bytes as usize;
    let service = |payload| Action::Service {
        service: depin_protocol::storage::SERVICE,
        payload,
    };
    let empty_size = f.tx(user, 1, service(Vec::new())).size_bytes();
    let oversized = f.tx(user, 1, service(vec![7; max_tx_bytes + 1 - empty_size]));
    assert_eq!(oversized.size_bytes(), max_tx_bytes + 1);
    let register = Action::RegisterProvider {
        services: storage_offer(),
        location: None,
    };
    let hex_of = |tx: &SignedTransaction| hex::encode(tx.to_bytes());
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("not hex", "zz-not-hex".into(), 400, "malformed_tx"),
        (
            "not a tx",
            hex::encode(b"certainly not a transaction"),
            400,
            "malformed_tx",
        ),
        (
            "bad signature",
            hex_of(&bad_signature),
            400,
            "bad_signature",
        ),
        ("wrong chain", hex_of(&wrong_chain), 400, "wrong_chain"),
        ("fee too low", hex_of(&cheap), 400, "fee_too_low"),
        (
            "replayed nonce",
            hex_of(&f.tx(user, 0, transfer(recipient, 2 * DPN))),
            422,
            "nonce_replayed",
        ),
        ("committed tx again", hex_of(&first), 409, "already_known"),
        (
            "insufficient balance",
            hex_of(&f.tx(user, 1, transfer(recipient, USER_FUNDS))),
            422,
            "insufficient_balance",
        ),
        (
            "amount + fee overflows",
            hex_of(&f.tx(user, 1, transfer(recipient, u128::MAX))),
            422,
            "amount_overflow",
        ),
        (
            "unknown sender",
            hex_of(&f.tx(&stranger, 0, transfer(recipient, 1))),
            422,
            "unknown_account",
        ),
        ("oversized", hex_of(&oversized), 413, "tx_too_large"),
        (
            "provider without stake",
            hex_of(&f.tx(user, 1, register)),
            422,
            "stake_below_minimum",
        ),
        (
            "price by non-authority",
            hex_of(&f.tx(user, 1, set_price(9))),
            403,
            "unauthorized",
        ),
    ];
    let before = f.get_ok("/v1/status").await;
    assert_eq!(before["height"], 2);
    for (name, tx_hex, status, code) in cases {
        let response = post_tx(&f.url, &tx_hex).await;
        let (got, body) = &response;
        assert_eq!(
            (*got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {body}"
        );
        let now = f.get_ok("/v1/status").await;
        assert_eq!(now["state_root"], before["state_root"], "{name}");
        assert_eq!(now["mempool_txs"], 0, "{name}");
    }
    // Nothing refused sneaks into the next block: it changes the height and nothing else.
    let block = f.produce().await;
    assert!(block.txs.is_empty());
    let after = f.get_ok("/v1/status").await;
    assert_eq!(after["height"], 3);
    assert_eq!(after["state_root"], before["state_root"]);
    let account = f.account(&user.address()).await;
    assert_eq!(account["nonce"], 1);
    assert_eq!(amount(&account["balance"]), USER_FUNDS - DPN - FEE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lookups_answer_json_errors() {
    let f = Fixture::start(1000).await;
    let nobody = Keypair::from_seed(b"nobody").address();
    let zero_hash = "0".repeat(64);
    let cases = [
        (
            "/v1/accounts/notanaddress".to_string(),
            400,
            "invalid_address",
        ),
        (format!("/v1/accounts/{nobody}"), 404, "unknown_account"),
        ("/v1/blocks/999".into(), 404, "unknown_block"),
        ("/v1/blocks/999/raw".into(), 404, "unknown_block"),
        ("/v1/blocks/nothex".into(), 400, "invalid_hash"),
        (format!("/v1/txs/{zero_hash}"), 404, "unknown_tx"),
        ("/v1/txs/xyz".into(), 400, "invalid_hash"),
        (format!("/v1/providers/{nobody}"), 404, "not_a_provider"),
        ("/v1/rewards/abc".into(), 400, "invalid_number"),
        ("/v1/no/such/route".into(), 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let (got, body) = f.get(&path).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staking_providers_and_data_credits() {
    let f = Fixture::start(1000).await;
    let user = &f.user;
    let address = user.address();
    // Bond and register in one block: the register waits in the mempool behind the bond.
    f.submit(&f.tx(
        user,
        0,
        Action::Bond {
            amount: Amount(200 * DPN),
        },
    ))
    .await;
    let location = GeoLocation {
        lat_e7: 523_700_000,
        lon_e7: 48_900_000,
    };
    let register = Action::RegisterProvider {
        services: storage_offer(),
        location: Some(location),
    };
    let registered = f.submit(&f.tx(user, 1, register)).await;
    let block = f.produce().await;
    assert_eq!(block.txs.len(), 2);
    let receipt = f.get_ok(&format!("/v1/txs/{registered}")).await;
    assert_eq!(receipt["status"], "committed");
    assert!(
        receipt["events"]
            .as_array()
            .expect("events")
            .contains(&json!({"type": "provider_registered"}))
    );

    let list = f.get_ok("/v1/providers").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["providers"][0]["address"], address.to_string());
    let provider = f.get_ok(&format!("/v1/providers/{address}")).await;
    assert_eq!(
        provider["services"],
        json!([{"service": "storage", "capacity": 1u64 << 40, "price_dc_per_unit": 3}])
    );
    assert_eq!(amount(&provider["bonded"]), 200 * DPN);
    assert_eq!(provider["registered_height"], 1);
    assert!((provider["location"]["lat"].as_f64().expect("lat") - 52.37).abs() < 1e-6);
    let account = f.account(&address).await;
    assert_eq!(account["is_provider"], true);
    assert_eq!(amount(&account["stake"]["bonded"]), 200 * DPN);
    assert_eq!(
        amount(&account["balance"]),
        USER_FUNDS - 200 * DPN - 2 * FEE
    );

    // Storage needs 100 DPN bonded: keeping 50 is refused.
    let unbond = |n| Action::Unbond { amount: Amount(n) };
    let too_much = f.tx(user, 2, unbond(150 * DPN));
    let refused = post_tx(&f.url, &hex::encode(too_much.to_bytes())).await;
    assert_error(&refused, 422, "stake_below_minimum");

    f.submit(&f.tx(user, 2, Action::DeregisterProvider)).await;
    f.produce().await;
    assert_eq!(f.get_ok("/v1/providers").await["total"], 0);
    let gone = f.get(&format!("/v1/providers/{address}")).await;
    assert_error(&gone, 404, "not_a_provider");
    assert_eq!(f.account(&address).await["is_provider"], false);

    // Once deregistered, all of the stake may be unbonded.
    f.submit(&f.tx(user, 3, unbond(200 * DPN))).await;
    let block = f.produce().await;
    let stake = &f.account(&address).await["stake"];
    assert_eq!(amount(&stake["bonded"]), 0);
    assert_eq!(amount(&stake["unbonding"][0]["amount"]), 200 * DPN);
    let unbonding_blocks = f.genesis.staking.unbonding_blocks;
    assert_eq!(
        stake["unbonding"][0]["release_height"],
        block.header.height + unbonding_blocks
    );

    // 1 DPN at the genesis price of $1 buys $1 / $0.00001 = 100_000 Data Credits.
    let supply_before = f.get_ok("/v1/supply").await;
    f.submit(&f.tx(
        user,
        4,
        Action::BuyDataCredits {
            amount: Amount(DPN),
        },
    ))
    .await;
    f.produce().await;
    assert_eq!(f.account(&address).await["data_credits"], "100000");
    let supply = f.get_ok("/v1/supply").await;
    assert_eq!(
        amount(&supply["burned"]),
        amount(&supply_before["burned"]) + DPN
    );
    assert_eq!(
        amount(&supply["total"]),
        amount(&supply_before["total"]) - DPN
    );
    assert_eq!(supply["data_credits_outstanding"], "100000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_end_mints_the_validator_share() {
    let epoch_blocks = 5;
    let f = Fixture::start(epoch_blocks).await;
    let validator = f.validator.address();
    for _ in 1..epoch_blocks {
        f.produce().await;
    }
    assert_error(&f.get("/v1/rewards/0").await, 404, "unknown_epoch");
    let last = f.produce().await;
    assert_eq!(last.header.height, epoch_blocks);

    // Emission 1000 DPN: validators get 20%; no service did verified work, so the service
    // shares stay unminted.
    let emission = f.genesis.emission.initial_epoch_emission.0;
    let validator_share = emission / 5;
    let rewards = f.get_ok("/v1/rewards/0").await;
    assert_eq!(rewards["epoch"], 0);
    assert_eq!(rewards["height"], epoch_blocks);
    assert_eq!(amount(&rewards["emission"]), emission);
    assert_eq!(amount(&rewards["minted"]), validator_share);
    assert_eq!(amount(&rewards["unallocated"]), emission - validator_share);
    assert_eq!(
        rewards["rewards"],
        json!([{"account": validator, "kind": "validator", "amount": validator_share.to_string()}])
    );
    let buckets = rewards["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 1 + depin_protocol::services::builtin().len());
    for bucket in buckets {
        let minted = amount(&bucket["minted"]);
        if bucket["kind"] == "validator" {
            assert_eq!(minted, validator_share);
        } else {
            assert_eq!(minted, 0, "{bucket}");
            assert_eq!(bucket["unallocated"], bucket["allocation"], "{bucket}");
            assert!(amount(&bucket["allocation"]) > 0, "{bucket}");
        }
    }

    let account = f.account(&validator).await;
    assert_eq!(
        amount(&account["balance"]),
        VALIDATOR_FUNDS + validator_share
    );
    let paid = f.get_ok(&format!("/v1/accounts/{validator}/rewards")).await;
    assert_eq!(
        paid["epochs"],
        json!([{"epoch": 0, "total": validator_share.to_string(),
                "entries": [{"kind": "validator", "amount": validator_share.to_string()}]}])
    );
    assert_eq!(
        amount(&f.get_ok("/v1/supply").await["minted"]),
        validator_share
    );
    assert_error(&f.get("/v1/rewards/5").await, 404, "unknown_epoch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route_and_metrics_count() {
    let f = Fixture::start(1000).await;
    let doc = f.get_ok("/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let validator = f.validator.address().to_string();
    let zero_hash = "0".repeat(64);
    for (method, path) in crate::api::served_routes() {
        assert!(
            doc["paths"][&path][method].is_object(),
            "{method} {path} undocumented"
        );
        // The route table is the router's: each path reaches a handler, not the fallback.
        let concrete = path
            .replace("{address}", &validator)
            .replace("{id}", "latest")
            .replace("{height}", "0")
            .replace("{hash}", &zero_hash)
            .replace("{epoch}", "0");
        let body = (method == "post").then(|| json!({"tx": "00"}));
        let (status, text) = request(f.url(&concrete), body).await.expect("request");
        let routed = status != 405 && !text.contains("\"not_found\"");
        assert!(routed, "{method} {concrete}: {status} {text}");
    }

    let recipient = Keypair::from_seed(b"recipient").address();
    let broke = f.tx(&f.user, 0, transfer(recipient, USER_FUNDS));
    let refused = post_tx(&f.url, &hex::encode(broke.to_bytes())).await;
    assert_error(&refused, 422, "insufficient_balance");
    f.submit(&f.tx(&f.user, 0, transfer(recipient, DPN))).await;
    f.produce().await;
    let (status, metrics) = get_text(f.url("/metrics")).await;
    assert_eq!(status, 200);
    for line in [
        "depin_chain_height 1",
        "depin_mempool_txs 0",
        "depin_txs_accepted_total 1",
        "depin_txs_rejected_total{reason=\"insufficient_balance\"} 1",
        "depin_block_commit_seconds_count 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    assert!(metrics.contains("depin_block_commit_seconds_bucket{le=\"+Inf\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_catches_up_and_forwards_transactions() {
    let f = Fixture::start(1000).await;
    let recipient = Keypair::from_seed(b"recipient").address();
    f.submit(&f.tx(&f.user, 0, transfer(recipient, DPN))).await;
    for _ in 0..3 {
        f.produce().await;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let api_listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("probe addr")
    };
    let follower_key = Keypair::from_seed(b"follower");
    let config = node_config(
        dir.path(),
        &f.genesis,
        &follower_key,
        Role::Provider,
        api_listen,
        Some(f.url.clone()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(run_until(config, async {
        let _ = stopped.await;
    }));
    let follower_url = format!("http://{api_listen}");

    let head = f.get_ok("/v1/status").await;
    let synced = |head: &Value| {
        let (height, root) = (head["height"].clone(), head["state_root"].clone());
        move |status: &Value| status["height"] == height && status["state_root"] == root
    };
    let status = wait_for(format!("{follower_url}/v1/status"), synced(&head)).await;
    assert_eq!(status["role"], "provider");
    assert_eq!(status["upstream"], f.url);
    assert_eq!(status["head_hash"], head["head_hash"]);

    // A transaction sent to the follower is forwarded to the validator and committed there.
    let forwarded = f.tx(&f.user, 1, transfer(recipient, 2 * DPN));
    let (code, body) = post_tx(&follower_url, &hex::encode(forwarded.to_bytes())).await;
    assert_eq!(code, 202, "{body}");
    let hash = forwarded.hash().to_string();
    assert_eq!(body["hash"], hash);
    assert_eq!(
        f.get_ok(&format!("/v1/txs/{hash}")).await["status"],
        "pending"
    );
    // The follower remembers what it forwarded, so clients polling it see it pending too.
    let (_, on_follower) = get_json(format!("{follower_url}/v1/txs/{hash}")).await;
    assert_eq!(on_follower["status"], "pending", "{on_follower}");
    let block = f.produce().await;
    assert_eq!(block.txs, vec![forwarded]);
    let committed = f.get_ok(&format!("/v1/txs/{hash}")).await;
    assert_eq!(committed["status"], "committed");
    assert_eq!(committed["height"], 4);

    let head = f.get_ok("/v1/status").await;
    wait_for(format!("{follower_url}/v1/status"), synced(&head)).await;
    let (_, on_follower) = get_json(format!("{follower_url}/v1/txs/{hash}")).await;
    assert_eq!(on_follower["status"], "committed", "{on_follower}");
    let (_, balance) = get_json(format!("{follower_url}/v1/accounts/{recipient}")).await;
    assert_eq!(amount(&balance["balance"]), 3 * DPN);
    // A refusal on the follower carries the same code as on the validator.
    let replay = f.tx(&f.user, 0, transfer(recipient, 3 * DPN));
    let refused = post_tx(&follower_url, &hex::encode(replay.to_bytes())).await;
    assert_error(&refused, 422, "nonce_replayed");

    stop.send(()).expect("follower still running");
    let result = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("follower stops within 10 s")
        .expect("follower task");
    assert!(result.is_ok(), "{result:?}");
}

/// The validator's TCP multiaddr on the service network, for a bootstrap list.
async fn tcp_addr(node: &Node) -> String {
    let net = node.net.get().expect("service network").clone();
    for _ in 0..100 {
        if let Some(a) = net
            .listen_addrs()
            .await
            .into_iter()
            .find(|a| a.to_string().contains("/tcp/"))
        {
            return a.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service network never listened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_syncs_and_gossips_over_the_service_network() {
    let f = Fixture::start_with(1000, true).await;
    let recipient = Keypair::from_seed(b"recipient").address();
    f.submit(&f.tx(&f.user, 0, transfer(recipient, DPN))).await;
    for _ in 0..40 {
        f.produce().await;
    }
    let bootstrap = tcp_addr(&f.node).await;

    // A full node with no upstream: it finds the validator through the bootstrap address
    // and fetches blocks in batches over request-response.
    let dir = tempfile::tempdir().expect("tempdir");
    let api_listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("probe addr")
    };
    let mut config = node_config(
        dir.path(),
        &f.genesis,
        &Keypair::from_seed(b"p2p follower"),
        Role::Full,
        api_listen,
        None,
    );
    config.net_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.bootstrap = vec![bootstrap.clone()];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(run_until(config, async {
        let _ = stopped.await;
    }));
    let follower_url = format!("http://{api_listen}");
    let synced = |head: &Value| {
        let (height, root) = (head["height"].clone(), head["state_root"].clone());
        move |status: &Value| status["height"] == height && status["state_root"] == root
    };
    let head = f.get_ok("/v1/status").await;
    assert_eq!(head["height"], 40);
    let status = wait_for(format!("{follower_url}/v1/status"), synced(&head)).await;
    assert!(status["upstream"].is_null());

    // A transaction sent to the follower reaches the validator's mempool by gossip.
    let gossiped = f.tx(&f.user, 1, transfer(recipient, 2 * DPN));
    let (code, body) = post_tx(&follower_url, &hex::encode(gossiped.to_bytes())).await;
    assert_eq!(code, 202, "{body}");
    let hash = gossiped.hash().to_string();
    wait_for(f.url(&format!("/v1/txs/{hash}")), |v| {
        v["status"] == "pending"
    })
    .await;
    let block = f.produce().await;
    assert_eq!(block.txs, vec![gossiped]);
    let head = f.get_ok("/v1/status").await;
    wait_for(format!("{follower_url}/v1/status"), synced(&head)).await;
    let (_, on_follower) = get_json(format!("{follower_url}/v1/txs/{hash}")).await;
    assert_eq!(on_follower["status"], "committed", "{on_follower}");

    // Malformed block requests get no answer and are counted; a request past the head gets
    // an empty batch.
    let probe_key = Keypair::from_seed(b"probe");
    let mut probe = depin_net::NetConfig::new(probe_key, f.genesis.chain_id.clone());
    probe.listen_tcp = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
    probe.listen_quic = None;
    probe.bootstrap = vec![bootstrap.parse().expect("multiaddr")];
    let (probe, _events) = depin_net::Network::start(probe).await.expect("probe net");
    let validator_peer = depin_net::peer_id_of(&f.validator.address()).expect("peer id");
    let garbage = probe
        .request(validator_peer, follow::BLOCK_PROTOCOL, vec![0xff; 3])
        .await;
    assert!(garbage.is_err(), "malformed request answered: {garbage:?}");
    let (_, metrics) = get_text(f.url("/metrics")).await;
    assert!(
        metrics.contains("depin_sync_bad_requests_total 1"),
        "{metrics}"
    );
    let past = depin_types::encode(&follow::BlocksRequest {
        from: 1_000,
        count: 4,
    });
    let answer = probe
        .request(validator_peer, follow::BLOCK_PROTOCOL, past)
        .await
        .expect("answer");
    let answer: follow::BlocksResponse =
        depin_types::decode_bounded(&answer, 1 << 20).expect("decodes");
    assert!(answer.blocks.is_empty());
    assert_eq!(answer.head, 41);
    probe.shutdown().await;

    stop.send(()).expect("follower still running");
    let result = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("follower stops within 10 s")
        .expect("follower task");
    assert!(result.is_ok(), "{result:?}");
}

mod hotspot {
    use super::*;
    use depin_coverage::frames::DeviceFrame;
    use depin_coverage::gwmp::{Packet, PushDataBody, RxPk, TxAckBody, TxPkAck};
    use depin_protocol::coverage::verify::{
        BeaconReport, Region, beacon_payload, payload_local_entropy,
    };
    use depin_protocol::coverage::{
        CoverageTx, Device, EntropyRecord, HotspotAssertion, PendingBeacon, keys,
    };
    use depin_types::Keypair;
    use tokio::net::UdpSocket;

    const NODE_EUI: u64 = 0xA0;

    fn coverage(tx: CoverageTx) -> Action {
        Action::Service {
            service: depin_protocol::coverage::SERVICE,
            payload: depin_types::encode(&tx),
        }
    }

    fn assertion(lat_e7: i32, eui: u64) -> HotspotAssertion {
        HotspotAssertion {
            location: depin_protocol::coverage::verify::location_cell_e7(lat_e7, 49_000_000)
                .expect("a cell"),
            gain_dbi_x10: 30,
            elevation_m: 5,
            region: Region::Eu868,
            full_capability: true,
            gateway_eui: eui,
        }
    }

    fn rxpk(payload: &[u8], rssi: i32) -> RxPk {
        use base64::Engine as _;
        RxPk {
            time: None,
            tmst: 1,
            freq: 868.1,
            chan: 0,
            rfch: 0,
            stat: 1,
            modu: "LORA".into(),
            datr: Value::String("SF9BW125".into()),
            codr: Some("4/5".into()),
            rssi,
            lsnr: Some(6.0),
            size: payload.len() as u32,
            data: base64::engine::general_purpose::STANDARD.encode(payload),
        }
    }

    fn push(gateway: u64, payload: &[u8]) -> Vec<u8> {
        Packet::PushData {
            version: 2,
            token: 77,
            gateway,
            body: PushDataBody {
                rxpk: vec![rxpk(payload, -90)],
                stat: None,
            },
        }
        .encode()
    }

    fn record<T: borsh::BorshDeserialize>(f: &Fixture, key: &[u8]) -> Option<T> {
        f.node
            .chain()
            .service_record(depin_protocol::coverage::SERVICE, key)
            .expect("state reads")
    }

    async fn recv(socket: &UdpSocket, wait: Duration) -> Option<Packet> {
        let mut buf = vec![0u8; 4096];
        let (len, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Packet::decode(&buf[..len]).ok()
    }

    /// The node serves a packet forwarder played by the test: it beacons through PULL_RESP
    /// on the chain's entropy, reports a neighbour's beacon it hears as a witness and a device's
    /// frame as a packet receipt, and the chain verifies and pays them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hotspot_beacons_through_its_forwarder_and_reports_what_it_hears() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free udp port");
        let f = Fixture::start_configured(100_000, false, |c| {
            c.gateway_listen = Some(port);
            c.gateway_eui = Some(format!("{NODE_EUI:016x}"));
        })
        .await;
        let device = Keypair::from_seed(b"device");
        let offer = vec![ServiceOffer {
            service: depin_protocol::coverage::SERVICE,
            capacity: 1,
            price_dc_per_unit: 1,
        }];
        let location = Some(GeoLocation {
            lat_e7: 523_700_000,
            lon_e7: 49_000_000,
        });
        for (key, site, eui) in [
            (&f.validator, 523_700_000, NODE_EUI),
            (&f.user, 523_880_000, 0xA1),
        ] {
            let actions = [
                Action::Bond {
                    amount: Amount(100 * DPN),
                },
                Action::RegisterProvider {
                    services: offer.clone(),
                    location,
                },
                coverage(CoverageTx::AssertHotspot(assertion(site, eui))),
            ];
            for (nonce, action) in actions.into_iter().enumerate() {
                f.submit(&f.tx(key, nonce as u64, action)).await;
            }
        }
        f.submit(&f.tx(
            &f.user,
            3,
            Action::BuyDataCredits {
                amount: Amount(DPN),
            },
        ))
        .await;
        f.submit(&f.tx(
            &f.user,
            4,
            coverage(CoverageTx::RegisterDevice {
                dev_addr: 0x2601_0001,
                device_key: device.address(),
            }),
        ))
        .await;
        f.produce().await;
        let credits = f
            .node
            .chain()
            .account(&f.user.address())
            .expect("reads")
            .expect("user")
            .data_credits;

        let stop = Arc::new(AtomicBool::new(false));
        crate::coverage::start(&f.node, stop.clone());
        let forwarder = UdpSocket::bind("127.0.0.1:0").await.expect("forwarder");
        let pull = Packet::PullData {
            version: 2,
            token: 1,
            gateway: NODE_EUI,
        }
        .encode();
        let mut acked = false;
        for _ in 0..50 {
            forwarder.send_to(&pull, port).await.expect("send");
            if let Some(Packet::PullAck { .. }) = recv(&forwarder, Duration::from_millis(100)).await
            {
                acked = true;
                break;
            }
        }
        assert!(acked, "no PULL_ACK from the hotspot");

        // Blocks until an entropy is published and the hotspot beacons on it.
        let mut beacon = None;
        for _ in 0..100 {
            f.produce().await;
            if let Some(Packet::PullResp { token, body, .. }) =
                recv(&forwarder, Duration::from_millis(60)).await
            {
                let ack = Packet::TxAck {
                    version: 2,
                    token,
                    gateway: NODE_EUI,
                    body: Some(TxAckBody {
                        txpk_ack: TxPkAck {
                            error: "NONE".into(),
                        },
                    }),
                };
                forwarder.send_to(&ack.encode(), port).await.expect("ack");
                beacon = Some(body.txpk);
                break;
            }
        }
        let beacon = beacon.expect("the hotspot beaconed through PULL_RESP");
        let live: Vec<EntropyRecord> = record(&f, keys::LIVE_ENTROPY).expect("entropy");
        let entropy = *live.last().expect("live entropy");
        let me = f.validator.address();
        let sent = beacon.payload().expect("payload");
        let local = payload_local_entropy(&sent).expect("a beacon's length");
        assert_eq!(
            sent,
            beacon_payload(&entropy.value, &me, Region::Eu868, 30, &local)
        );

        // The neighbour (the user) beacons too; the gateway hears it, and a device's frame,
        // and a datagram from a gateway this hotspot does not serve. The neighbour reports its
        // beacon once this hotspot's witness is on chain.
        let theirs = BeaconReport {
            beaconer: f.user.address(),
            entropy: entropy.value,
            sent_ms: f.node.chain().head().timestamp_ms,
            frequency_hz: 868_100_000,
            payload: beacon_payload(
                &entropy.value,
                &f.user.address(),
                Region::Eu868,
                30,
                &[7; 16],
            ),
        };
        let frame = DeviceFrame::sign(&device, 0x2601_0001, 1, b"21.5C").expect("fits");
        for datagram in [
            push(NODE_EUI, &theirs.payload),
            push(NODE_EUI, &frame.encode()),
            push(0xBAD, &frame.encode()),
        ] {
            forwarder.send_to(&datagram, port).await.expect("push");
            assert!(matches!(
                recv(&forwarder, Duration::from_secs(2)).await,
                Some(Packet::PushAck { .. }) | None
            ));
        }

        // The hotspot's beacon, its witness and the receipt reach the chain.
        let mine = keys::pending(&entropy.value, &me);
        let heard = keys::pending(&entropy.value, &f.user.address());
        let device_key = keys::device(0x2601_0001);
        let mut landed = false;
        let mut theirs_reported = false;
        for _ in 0..150 {
            f.produce().await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            if !theirs_reported
                && record::<PendingBeacon>(&f, &heard)
                    .is_some_and(|p| p.witnesses.iter().any(|w| w.witness == me))
            {
                f.submit(&f.tx(&f.user, 5, coverage(CoverageTx::Beacon(theirs.clone()))))
                    .await;
                theirs_reported = true;
            }
            let beaconed = record::<PendingBeacon>(&f, &mine).is_some_and(|p| p.beacon.is_some());
            let witnessed = record::<PendingBeacon>(&f, &heard)
                .is_some_and(|p| p.witnesses.iter().any(|w| w.witness == me));
            let paid = record::<Device>(&f, &device_key).is_some_and(|d| d.packets_paid == 1);
            if beaconed && witnessed && paid {
                landed = true;
                break;
            }
        }
        assert!(landed, "beacon, witness and receipt did not all land");
        let after = f
            .node
            .chain()
            .account(&f.user.address())
            .expect("reads")
            .expect("user")
            .data_credits;
        assert_eq!(after, credits - 1, "a 5-byte packet costs 1 DC");

        // Once the entropy's window closes, the verdicts are on the hotspot's record.
        while record::<Vec<EntropyRecord>>(&f, keys::LIVE_ENTROPY)
            .unwrap_or_default()
            .iter()
            .any(|e| e.value == entropy.value)
        {
            f.produce().await;
        }
        stop.store(true, Ordering::Relaxed);
        let hotspot = f.get_ok(&format!("/v1/coverage/hotspots/{me}")).await;
        let tally = hotspot["tally"].as_object().expect("tally");
        assert!(tally.keys().any(|k| k.starts_with("beacon_")), "{hotspot}");
        assert!(tally.keys().any(|k| k.starts_with("witness_")), "{hotspot}");
        assert_eq!(hotspot["packets"], 1);
        let (status, body) = f.get("/v1/coverage/hotspots/depin1nothing").await;
        assert_eq!(status, 400, "{body}");
    }
}
