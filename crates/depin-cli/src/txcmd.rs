//! Transaction verbs: read the key, learn the chain (id, fees, decimals) and the sender's nonce
//! from the node, build the transaction with the minimum fee for its size, sign, submit and
//! wait for the block that includes it.

use crate::Ctx;
use crate::client::{Client, CodedError};
use crate::keycmd::read_key;
use crate::output;
use anyhow::Context;
use clap::{Args, Subcommand};
use depin_node::api_types::{
    AccountResponse, ErrorDetail, StatusResponse, SubmitTxRequest, SubmitTxResponse, TokenInfo,
    TxStatus, TxStatusResponse,
};
use depin_protocol::service::ServiceEvent;
use depin_protocol::tx::{GeoLocation, ServiceOffer};
use depin_protocol::{Action, Genesis, Protocol, SignedTransaction, Transaction};
use depin_types::{Address, Amount, AmountError, Hash, Keypair, ServiceKind};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often and how long to ask whether a submitted transaction made it into a block.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Options every transaction verb takes.
#[derive(Args, Debug, Clone)]
pub struct TxOpts {
    /// Key file of the sender.
    #[arg(long)]
    pub key: PathBuf,
    /// Return once the node accepted the transaction instead of waiting for its block.
    #[arg(long)]
    pub no_wait: bool,
    /// Use this nonce instead of the account's next one (to queue several transactions).
    #[arg(long)]
    pub nonce: Option<u64>,
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    /// Recipient address (`depin1...`).
    #[arg(long)]
    pub to: String,
    /// Whole tokens, e.g. 12.5.
    #[arg(long)]
    pub amount: String,
    #[command(flatten)]
    pub tx: TxOpts,
}

#[derive(Args, Debug)]
pub struct AmountArgs {
    /// Whole tokens, e.g. 12.5.
    #[arg(long)]
    pub amount: String,
    #[command(flatten)]
    pub tx: TxOpts,
}

#[derive(Subcommand, Debug)]
pub enum StakeCommand {
    /// Move tokens from the balance into bonded stake.
    Bond(AmountArgs),
    /// Start unbonding stake; it can be withdrawn after the unbonding period.
    Unbond(AmountArgs),
    /// Move every matured unbonding entry back to the balance.
    Withdraw(TxOpts),
    /// Stand for the validator set (needs the validator minimum bonded). Each epoch's set is
    /// the top stakes among candidates, chosen one epoch ahead.
    RegisterValidator(ValidatorArgs),
    /// Withdraw validator candidacy (takes effect at the next set change).
    DeregisterValidator(TxOpts),
}

#[derive(Args, Debug)]
pub struct ValidatorArgs {
    /// Where this node's consensus endpoint listens, host:port (its `p2p_listen`).
    #[arg(long = "consensus-addr")]
    pub consensus_address: String,
    #[command(flatten)]
    pub tx: TxOpts,
}

#[derive(Args, Debug)]
pub struct SetPriceArgs {
    /// USD per whole token, up to 6 decimal places, e.g. 1.25.
    #[arg(long)]
    pub usd: String,
    #[command(flatten)]
    pub tx: TxOpts,
}

#[derive(Args, Debug)]
pub struct ProviderArgs {
    /// Services offered, comma separated: storage, compute, coverage, video.
    #[arg(long, value_delimiter = ',', required = true)]
    pub services: Vec<String>,
    /// Capacity per service in its unit, e.g. storage=1099511627776,compute=1000000.
    #[arg(long, value_delimiter = ',', required = true)]
    pub capacity: Vec<String>,
    /// Price in Data Credits per unit per service, e.g. storage=1 (default 1).
    #[arg(long, value_delimiter = ',')]
    pub price: Vec<String>,
    /// Latitude in degrees.
    #[arg(long, allow_negative_numbers = true, requires = "lon")]
    pub lat: Option<f64>,
    /// Longitude in degrees.
    #[arg(long, allow_negative_numbers = true, requires = "lat")]
    pub lon: Option<f64>,
    #[command(flatten)]
    pub tx: TxOpts,
}

/// What the chain says a transaction needs: its id, fee schedule and token.
pub struct Network {
    pub chain_id: String,
    pub genesis: Genesis,
}

impl Network {
    pub fn fetch(client: &Client) -> anyhow::Result<Network> {
        let status: StatusResponse = client.get("/v1/status")?;
        let genesis: Genesis = client.get("/v1/params")?;
        Ok(Network {
            chain_id: status.chain_id,
            genesis,
        })
    }

    pub fn token(&self) -> TokenInfo {
        TokenInfo {
            symbol: self.genesis.token.symbol.clone(),
            decimals: self.genesis.token.decimals,
        }
    }
}

/// The result of a transaction verb: `{"hash","status","height"}` in JSON.
#[derive(Debug, Serialize)]
pub struct TxOutcome {
    pub hash: Hash,
    pub status: TxStatus,
    pub height: Option<u64>,
    #[serde(skip)]
    pub events: Vec<serde_json::Value>,
}

fn amount_error(e: AmountError) -> CodedError {
    match e {
        AmountError::Overflow => CodedError::new("amount_overflow", "amount overflow"),
        AmountError::Parse { .. } => CodedError::new("invalid_amount", e.to_string()),
    }
}

impl TxOutcome {
    /// The events of service `E` this transaction reported, decoded from their bytes.
    pub fn service_events<'a, E: ServiceEvent + 'a>(&'a self) -> impl Iterator<Item = E> + 'a {
        self.events.iter().filter_map(decode_service_event::<E>)
    }
}

/// A service event of `E` from the node's JSON of an event: the borsh bytes in `data` of an
/// event tagged `service` with `E`'s service.
pub fn decode_service_event<E: ServiceEvent>(event: &serde_json::Value) -> Option<E> {
    if event["type"] != "service" || event["service"] != E::SERVICE.as_str() {
        return None;
    }
    let data = hex::decode(event["data"].as_str()?).ok()?;
    depin_types::decode_bounded(&data, depin_protocol::block::MAX_SERVICE_EVENT_BYTES).ok()
}

/// Checks an amount's syntax before any request. The token's decimals are not known yet, so
/// only what is wrong for every possible decimals (at most 18) is refused here.
pub fn precheck_amount(text: &str) -> Result<(), CodedError> {
    match Amount::parse_decimal(text, 18) {
        Ok(_) => Ok(()),
        Err(AmountError::Overflow) => match Amount::parse_decimal(text, 0) {
            // Too large even as whole base units: it overflows whatever the decimals are.
            Err(AmountError::Overflow) => Err(amount_error(AmountError::Overflow)),
            _ => Ok(()),
        },
        Err(e) => Err(amount_error(e)),
    }
}

/// Whole tokens to base units with the chain's decimals.
pub fn parse_amount(text: &str, decimals: u8) -> Result<Amount, CodedError> {
    Amount::parse_decimal(text, decimals).map_err(amount_error)
}

pub fn parse_address(text: &str) -> Result<Address, CodedError> {
    text.trim()
        .parse()
        .map_err(|e: depin_types::AddressError| CodedError::new("invalid_address", e.to_string()))
}

/// The sender's next nonce in committed state; an unknown account starts at 0 (the node then
/// rejects the transaction with `unknown_account`, which says more than a guess here).
pub fn next_nonce(client: &Client, address: &Address) -> anyhow::Result<u64> {
    let account: Option<AccountResponse> =
        client.get_optional(&format!("/v1/accounts/{address}"), "unknown_account")?;
    Ok(account.map(|a| a.nonce).unwrap_or(0))
}

/// Builds and signs a transaction paying exactly the minimum fee for its size. The fee is a
/// fixed-width field, so a first build with fee 0 has the final size.
pub fn sign_with_min_fee(
    network: &Network,
    key: &Keypair,
    nonce: u64,
    action: Action,
) -> anyhow::Result<SignedTransaction> {
    let mut tx = Transaction {
        chain_id: network.chain_id.clone(),
        sender: key.address(),
        nonce,
        fee: Amount::ZERO,
        action,
    };
    let size_bytes = tx.clone().sign(key).size_bytes();
    let protocol = Protocol::new(network.genesis.clone())
        .context("the node's chain parameters are invalid")?;
    tx.fee = protocol.min_fee(size_bytes);
    Ok(tx.sign(key))
}

pub fn submit(client: &Client, tx: &SignedTransaction) -> anyhow::Result<Hash> {
    let request = SubmitTxRequest {
        tx: hex::encode(tx.to_bytes()),
    };
    let response: SubmitTxResponse = client.post("/v1/txs", &request)?;
    Ok(response.hash)
}

/// A transaction lookup. The events stay JSON: `Event` is an internally tagged enum with u128
/// fields, which serde cannot deserialize through its buffering (the node writes them fine).
pub struct TxLookup {
    /// The node's answer as it came, for `--json`.
    pub raw: serde_json::Value,
    pub status: TxStatusResponse,
    pub events: Vec<serde_json::Value>,
}

/// GET /v1/txs/{hash}; `None` when the node does not know the transaction.
pub fn lookup_tx(client: &Client, hash: &Hash) -> anyhow::Result<Option<TxLookup>> {
    let path = format!("/v1/txs/{hash}");
    let Some(raw) = client.get_optional::<serde_json::Value>(&path, "unknown_tx")? else {
        return Ok(None);
    };
    let mut rest = raw.clone();
    let events = match rest.as_object_mut().and_then(|o| o.remove("events")) {
        Some(serde_json::Value::Array(events)) => events,
        _ => Vec::new(),
    };
    let status: TxStatusResponse = serde_json::from_value(rest)
        .with_context(|| format!("unexpected answer from {}{path}", client.base()))?;
    Ok(Some(TxLookup {
        raw,
        status,
        events,
    }))
}

/// Polls the node until the transaction is committed (Ok) or dropped (its error).
pub fn wait_for_commit(client: &Client, hash: &Hash) -> anyhow::Result<TxLookup> {
    let deadline = Instant::now() + COMMIT_TIMEOUT;
    let mut last = "unknown".to_string();
    loop {
        // Right after submission a follower may not know the transaction yet: keep asking.
        if let Some(lookup) = lookup_tx(client, hash)? {
            match lookup.status.status {
                TxStatus::Committed => return Ok(lookup),
                TxStatus::Dropped => {
                    let error = lookup.status.error.unwrap_or(ErrorDetail {
                        code: "dropped".into(),
                        message: format!("transaction {hash} was dropped"),
                    });
                    return Err(CodedError::new(error.code, error.message).into());
                }
                TxStatus::Pending => last = TxStatus::Pending.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(CodedError::new(
                "tx_timeout",
                format!(
                    "transaction {hash} was not committed within {} s (last status: {last}); \
                     follow it with `depin tx show {hash}`",
                    COMMIT_TIMEOUT.as_secs()
                ),
            )
            .into());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Signs `action` with `key`, submits it and (when `wait`) waits for its block.
pub fn send(
    client: &Client,
    network: &Network,
    key: &Keypair,
    nonce: Option<u64>,
    action: Action,
    wait: bool,
) -> anyhow::Result<TxOutcome> {
    let nonce = match nonce {
        Some(n) => n,
        None => next_nonce(client, &key.address())?,
    };
    let tx = sign_with_min_fee(network, key, nonce, action)?;
    let hash = submit(client, &tx)?;
    if !wait {
        return Ok(TxOutcome {
            hash,
            status: TxStatus::Pending,
            height: None,
            events: Vec::new(),
        });
    }
    let lookup = wait_for_commit(client, &hash)?;
    Ok(TxOutcome {
        hash,
        status: lookup.status.status,
        height: lookup.status.height,
        events: lookup.events,
    })
}

/// The common path of every transaction verb. `amounts` are checked before any request;
/// `build` turns the arguments into an action once the chain's parameters are known.
pub(crate) fn run(
    ctx: &Ctx,
    opts: &TxOpts,
    amounts: &[&str],
    build: impl FnOnce(&Genesis) -> anyhow::Result<Action>,
) -> anyhow::Result<()> {
    for text in amounts {
        precheck_amount(text)?;
    }
    let key = read_key(&opts.key)?;
    let network = Network::fetch(&ctx.client)?;
    let action = build(&network.genesis)?;
    let outcome = send(
        &ctx.client,
        &network,
        &key,
        opts.nonce,
        action,
        !opts.no_wait,
    )?;
    ctx.out.emit(&outcome, || {
        let token = network.token();
        let mut text = match outcome.height {
            Some(height) => format!("committed {} at height {height}\n", outcome.hash),
            None => format!(
                "submitted {} ({}); follow it with `depin tx show {}`\n",
                outcome.hash, outcome.status, outcome.hash
            ),
        };
        for event in &outcome.events {
            text.push_str(&format!("  {}\n", output::event_json(event, &token)));
        }
        Ok(text)
    })
}

pub fn transfer(ctx: &Ctx, args: TransferArgs) -> anyhow::Result<()> {
    let to = parse_address(&args.to)?;
    run(ctx, &args.tx, &[&args.amount], |g| {
        Ok(Action::Transfer {
            to,
            amount: parse_amount(&args.amount, g.token.decimals)?,
        })
    })
}

pub fn stake(ctx: &Ctx, command: StakeCommand) -> anyhow::Result<()> {
    match command {
        StakeCommand::Bond(args) => run(ctx, &args.tx, &[&args.amount], |g| {
            Ok(Action::Bond {
                amount: parse_amount(&args.amount, g.token.decimals)?,
            })
        }),
        StakeCommand::Unbond(args) => run(ctx, &args.tx, &[&args.amount], |g| {
            Ok(Action::Unbond {
                amount: parse_amount(&args.amount, g.token.decimals)?,
            })
        }),
        StakeCommand::Withdraw(opts) => run(ctx, &opts, &[], |_| Ok(Action::Withdraw)),
        StakeCommand::RegisterValidator(args) => run(ctx, &args.tx, &[], |_| {
            Ok(Action::RegisterValidator {
                consensus_address: args.consensus_address.clone(),
            })
        }),
        StakeCommand::DeregisterValidator(opts) => {
            run(ctx, &opts, &[], |_| Ok(Action::DeregisterValidator))
        }
    }
}

pub fn buy_data_credits(ctx: &Ctx, args: AmountArgs) -> anyhow::Result<()> {
    run(ctx, &args.tx, &[&args.amount], |g| {
        Ok(Action::BuyDataCredits {
            amount: parse_amount(&args.amount, g.token.decimals)?,
        })
    })
}

/// `1.25` USD to 1_250_000 micro-USD.
pub fn parse_usd_micro(text: &str) -> Result<u64, CodedError> {
    let micro = Amount::parse_decimal(text, 6).map_err(|e| match e {
        AmountError::Overflow => CodedError::new("amount_overflow", "price overflow"),
        AmountError::Parse { .. } => CodedError::new("invalid_price", e.to_string()),
    })?;
    u64::try_from(micro.0).map_err(|_| CodedError::new("amount_overflow", "price overflow"))
}

pub fn set_price(ctx: &Ctx, args: SetPriceArgs) -> anyhow::Result<()> {
    let price_usd_micro = parse_usd_micro(&args.usd)?;
    run(ctx, &args.tx, &[], |_| {
        Ok(Action::SetOraclePrice { price_usd_micro })
    })
}

pub fn provider(ctx: &Ctx, args: ProviderArgs, update: bool) -> anyhow::Result<()> {
    let (services, location) = parse_offers(&args)?;
    run(ctx, &args.tx, &[], |_| {
        Ok(if update {
            Action::UpdateProvider { services, location }
        } else {
            Action::RegisterProvider { services, location }
        })
    })
}

pub fn deregister(ctx: &Ctx, opts: TxOpts) -> anyhow::Result<()> {
    run(ctx, &opts, &[], |_| Ok(Action::DeregisterProvider))
}

/// A service the protocol registers, by name.
fn parse_service(name: &str) -> Result<ServiceKind, String> {
    let known: Vec<ServiceKind> = depin_protocol::services::builtin()
        .iter()
        .map(|m| m.service())
        .collect();
    let names = || {
        known
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name.trim().parse::<ServiceKind>() {
        Ok(service) if known.contains(&service) => Ok(service),
        _ => Err(format!(
            "unknown service {:?}: expected one of {}",
            name.trim(),
            names()
        )),
    }
}

/// `service=value` pairs to a lookup; every service named must be offered.
fn parse_pairs(
    flag: &str,
    items: &[String],
    services: &[ServiceKind],
) -> Result<Vec<(ServiceKind, u64)>, CodedError> {
    let invalid = |m: String| CodedError::new("invalid_services", m);
    let mut out: Vec<(ServiceKind, u64)> = Vec::new();
    for item in items {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| invalid(format!("--{flag} {item:?}: expected service=number")))?;
        let service = parse_service(name).map_err(invalid)?;
        if !services.contains(&service) {
            return Err(invalid(format!(
                "--{flag} names {service}, which is not in --services"
            )));
        }
        if out.iter().any(|(s, _)| *s == service) {
            return Err(invalid(format!("--{flag} lists {service} twice")));
        }
        let value: u64 = value.trim().parse().map_err(|_| {
            invalid(format!(
                "--{flag} {item:?}: {value:?} is not a whole number"
            ))
        })?;
        out.push((service, value));
    }
    Ok(out)
}

/// The offers and location of `provider register|update` from their flags.
pub fn parse_offers(
    args: &ProviderArgs,
) -> Result<(Vec<ServiceOffer>, Option<GeoLocation>), CodedError> {
    let invalid = |m: String| CodedError::new("invalid_services", m);
    let mut services = Vec::new();
    for name in args.services.iter().filter(|s| !s.trim().is_empty()) {
        let service = parse_service(name).map_err(invalid)?;
        if services.contains(&service) {
            return Err(invalid(format!("--services lists {service} twice")));
        }
        services.push(service);
    }
    if services.is_empty() {
        return Err(invalid("--services names no service".into()));
    }
    let capacity = parse_pairs("capacity", &args.capacity, &services)?;
    let price = parse_pairs("price", &args.price, &services)?;
    let mut offers = Vec::new();
    for service in services {
        let lookup = |pairs: &[(ServiceKind, u64)]| {
            pairs.iter().find(|(s, _)| *s == service).map(|(_, v)| *v)
        };
        let capacity = lookup(&capacity)
            .ok_or_else(|| invalid(format!("--capacity gives no capacity for {service}")))?;
        offers.push(ServiceOffer {
            service,
            capacity,
            price_dc_per_unit: lookup(&price).unwrap_or(1),
        });
    }
    let location = match (args.lat, args.lon) {
        (Some(lat), Some(lon)) => Some(parse_location(lat, lon)?),
        _ => None,
    };
    Ok((offers, location))
}

fn parse_location(lat: f64, lon: f64) -> Result<GeoLocation, CodedError> {
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(CodedError::new(
            "invalid_location",
            "latitude must be within ±90°, longitude within ±180°",
        ));
    }
    // In range, so the scaled values fit an i32 (±1.8e9 < 2^31).
    Ok(GeoLocation {
        lat_e7: (lat * 1e7).round() as i32,
        lon_e7: (lon * 1e7).round() as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(services: &str, capacity: &str, price: &str) -> ProviderArgs {
        let split = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        ProviderArgs {
            services: split(services),
            capacity: split(capacity),
            price: if price.is_empty() {
                vec![]
            } else {
                split(price)
            },
            lat: Some(52.5),
            lon: Some(-13.4),
            tx: TxOpts {
                key: PathBuf::from("k"),
                no_wait: false,
                nonce: None,
            },
        }
    }

    #[test]
    fn offers_from_flags() {
        let (offers, location) = parse_offers(&args(
            "storage,compute",
            "storage=10,compute=20",
            "compute=3",
        ))
        .expect("valid");
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].service, depin_protocol::storage::SERVICE);
        assert_eq!((offers[0].capacity, offers[0].price_dc_per_unit), (10, 1));
        assert_eq!((offers[1].capacity, offers[1].price_dc_per_unit), (20, 3));
        assert_eq!(
            location,
            Some(GeoLocation {
                lat_e7: 525_000_000,
                lon_e7: -134_000_000
            })
        );
        for (s, c, p) in [
            ("storage", "compute=1", ""),
            ("storage", "storage=x", ""),
            ("storage", "", ""),
            ("storage,storage", "storage=1", ""),
            ("radio", "radio=1", ""),
            ("storage", "storage=1", "video=2"),
        ] {
            assert!(parse_offers(&args(s, c, p)).is_err(), "{s} {c} {p}");
        }
    }

    #[test]
    fn amounts_and_prices() {
        assert!(precheck_amount("12.5").is_ok());
        assert_eq!(
            precheck_amount("1x").map_err(|e| e.code),
            Err("invalid_amount".into())
        );
        assert_eq!(
            precheck_amount(&"9".repeat(60)).map_err(|e| e.code),
            Err("amount_overflow".into())
        );
        // 3.4e32 whole tokens fit u128 as base units only without decimals.
        let big = "340282366920938463463374607431";
        assert!(precheck_amount(big).is_ok());
        assert_eq!(
            parse_amount(big, 18).map_err(|e| e.code),
            Err("amount_overflow".into())
        );
        assert_eq!(parse_usd_micro("1.25").ok(), Some(1_250_000));
        assert!(parse_usd_micro("1.2345678").is_err());
    }

    #[test]
    fn min_fee_covers_the_signed_size() {
        let key = Keypair::from_seed(b"fee");
        let a = key.address();
        let network = Network {
            chain_id: "depin-test".into(),
            genesis: Genesis::devnet("depin-test", 0, &[a], a, &[]),
        };
        let action = Action::Transfer {
            to: a,
            amount: Amount(5),
        };
        let tx = sign_with_min_fee(&network, &key, 0, action).expect("sign");
        let protocol = Protocol::new(network.genesis.clone()).expect("protocol");
        assert_eq!(tx.tx.fee, protocol.min_fee(tx.size_bytes()));
        assert!(tx.verify_signature().is_ok());
        assert!(protocol.check_stateless(&tx).is_ok());
    }
}
