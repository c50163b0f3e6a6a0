//! Read-only verbs: accounts, providers, chain status, blocks, transactions, rewards, supply.
//! With `--json` each prints the node's answer as it came; otherwise whole-token text.

use crate::Ctx;
use crate::client::CodedError;
use crate::output::{self, rows, tokens};
use crate::txcmd::{lookup_tx, parse_address};
use clap::Args;
use depin_node::api_types::{
    AccountResponse, AccountRewardsResponse, BlockResponse, ProviderView, ProvidersResponse,
    StatusResponse, SupplyResponse, TokenInfo,
};
use depin_protocol::BlockHeader;
use depin_protocol::state::{EpochRewards, RewardKind};
use depin_types::{Amount, Hash};

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Most providers to show.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Start after this address (for paging).
    #[arg(long)]
    pub after: Option<String>,
}

#[derive(Args, Debug)]
pub struct RewardsArgs {
    /// One epoch's rewards.
    #[arg(long, conflicts_with = "account")]
    pub epoch: Option<u64>,
    /// One account's rewards over its latest epochs.
    #[arg(long)]
    pub account: Option<String>,
    /// Most epochs to show with --account.
    #[arg(long, default_value_t = 20, requires = "account")]
    pub limit: u32,
}

impl Ctx {
    /// Symbol and decimals for human output.
    pub fn token(&self) -> anyhow::Result<TokenInfo> {
        Ok(self.client.get::<StatusResponse>("/v1/status")?.token)
    }
}

fn parse_hash(text: &str) -> Result<Hash, CodedError> {
    text.trim()
        .parse()
        .map_err(|e: depin_types::HashParseError| {
            CodedError::new("invalid_hash", format!("{text:?}: {e}"))
        })
}

pub fn account(ctx: &Ctx, address: &str) -> anyhow::Result<()> {
    let address = parse_address(address)?;
    let a: AccountResponse = ctx.client.get(&format!("/v1/accounts/{address}"))?;
    ctx.out.emit(&a, || {
        let t = ctx.token()?;
        let unbonding = a
            .stake
            .unbonding
            .iter()
            .try_fold(Amount::ZERO, |acc, u| acc.checked_add(u.amount))
            .unwrap_or(Amount(u128::MAX));
        let mut roles = Vec::new();
        if a.is_validator {
            roles.push("validator");
        }
        if a.is_provider {
            roles.push("provider");
        }
        Ok(rows(&[
            ("address", a.address.to_string()),
            ("balance", tokens(a.balance, &t)),
            ("nonce", a.nonce.to_string()),
            ("data credits", format!("{} DC", a.data_credits)),
            ("bonded", tokens(a.stake.bonded, &t)),
            (
                "unbonding",
                format!(
                    "{} in {} entries",
                    tokens(unbonding, &t),
                    a.stake.unbonding.len()
                ),
            ),
            ("slashed", tokens(a.stake.slashed, &t)),
            (
                "roles",
                if roles.is_empty() {
                    "none".into()
                } else {
                    roles.join(", ")
                },
            ),
        ]))
    })
}

fn provider_text(p: &ProviderView, t: &TokenInfo) -> String {
    let mut text = rows(&[
        ("provider", p.address.to_string()),
        ("bonded", tokens(p.bonded, t)),
        (
            "reputation",
            format!("{}%", Amount(u128::from(p.reputation_ppm)).to_decimal(4)),
        ),
        (
            "location",
            p.location
                .as_ref()
                .map(|l| format!("{:.5}, {:.5}", l.lat, l.lon))
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "registered",
            format!(
                "height {} (updated {})",
                p.registered_height, p.updated_height
            ),
        ),
    ]);
    for s in &p.services {
        text.push_str(&format!(
            "  {:<9} capacity {:>16}  price {} DC/unit\n",
            s.service, s.capacity, s.price_dc_per_unit
        ));
    }
    text.extend(p.failures.iter().map(|f| {
        format!(
            "  failure at height {} on {}: {} (slashed {})\n",
            f.height,
            f.service,
            f.reason,
            tokens(f.slashed, t)
        )
    }));
    text
}

pub fn provider(ctx: &Ctx, address: &str) -> anyhow::Result<()> {
    let address = parse_address(address)?;
    let p: ProviderView = ctx.client.get(&format!("/v1/providers/{address}"))?;
    ctx.out.emit(&p, || Ok(provider_text(&p, &ctx.token()?)))
}

pub fn providers(ctx: &Ctx, args: ListArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1/providers?limit={}", args.limit);
    if let Some(after) = &args.after {
        path.push_str(&format!("&after={}", parse_address(after)?));
    }
    let list: ProvidersResponse = ctx.client.get(&path)?;
    ctx.out.emit(&list, || {
        let t = ctx.token()?;
        let mut text = format!("{} of {} providers\n", list.providers.len(), list.total);
        for p in &list.providers {
            let services: Vec<String> = p.services.iter().map(|s| s.service.clone()).collect();
            text.push_str(&format!(
                "{}  {:<24} bonded {}\n",
                p.address,
                services.join(","),
                tokens(p.bonded, &t)
            ));
        }
        Ok(text)
    })
}

pub fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let s: StatusResponse = ctx.client.get("/v1/status")?;
    ctx.out.emit(&s, || {
        let validators: Vec<String> = s.validators.iter().map(|v| v.to_string()).collect();
        Ok(rows(&[
            ("chain", s.chain_id.clone()),
            ("node", format!("{} ({})", s.node_address, s.role)),
            ("height", s.height.to_string()),
            ("head", s.head_hash.to_string()),
            ("state root", s.state_root.to_string()),
            ("time", output::timestamp(s.timestamp_ms)),
            (
                "reward epoch",
                format!(
                    "{} ({} blocks of {} ms)",
                    s.epoch, s.epoch_blocks, s.block_interval_ms
                ),
            ),
            ("validator era", s.era.to_string()),
            ("validators", validators.join(", ")),
            (
                "mempool",
                format!("{} txs, {} bytes", s.mempool_txs, s.mempool_bytes),
            ),
            ("upstream", s.upstream.clone().unwrap_or_else(|| "-".into())),
            (
                "token",
                format!("{} ({} decimals)", s.token.symbol, s.token.decimals),
            ),
            ("version", s.version.clone()),
        ]))
    })
}

/// `latest`, a height, or a block hash, checked before it goes into a URL.
fn block_id(text: &str) -> Result<String, CodedError> {
    let text = text.trim();
    if text == "latest" || text.parse::<u64>().is_ok() {
        return Ok(text.to_string());
    }
    text.parse::<Hash>().map(|h| h.to_string()).map_err(|_| {
        CodedError::new(
            "invalid_block_id",
            format!("{text:?} is not a height, a block hash or `latest`"),
        )
    })
}

pub fn block(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let id = block_id(id)?;
    let b: BlockResponse = ctx.client.get(&format!("/v1/blocks/{id}"))?;
    ctx.out.emit(&b, || {
        let t = ctx.token()?;
        let header: BlockHeader = serde_json::from_value(b.header.clone())?;
        let mut text = rows(&[
            ("height", header.height.to_string()),
            ("hash", b.hash.to_string()),
            ("parent", header.parent.to_string()),
            ("time", output::timestamp(header.timestamp_ms)),
            ("proposer", header.proposer.to_string()),
            ("state root", header.state_root.to_string()),
            ("txs", header.tx_count.to_string()),
        ]);
        for tx in &b.txs {
            text.push_str(&format!(
                "  {}  {:<20} from {}  fee {}\n",
                tx.hash,
                tx.kind,
                tx.sender,
                tokens(tx.fee, &t)
            ));
        }
        Ok(text)
    })
}

pub fn tx(ctx: &Ctx, hash: &str) -> anyhow::Result<()> {
    let hash = parse_hash(hash)?;
    let lookup = lookup_tx(&ctx.client, &hash)?.ok_or_else(|| {
        CodedError::new(
            "unknown_tx",
            format!("transaction {hash} is neither committed nor pending on this node"),
        )
    })?;
    ctx.out.emit(&lookup.raw, || {
        let t = ctx.token()?;
        let s = &lookup.status;
        let mut items = vec![
            ("hash", s.hash.to_string()),
            ("status", s.status.to_string()),
        ];
        if let Some(height) = s.height {
            items.push(("height", height.to_string()));
        }
        if let Some(index) = s.index {
            items.push(("index", index.to_string()));
        }
        if let Some(tx) = &s.tx {
            items.push(("kind", tx.kind.clone()));
            items.push(("sender", tx.sender.to_string()));
            items.push(("nonce", tx.nonce.to_string()));
            items.push(("fee", tokens(tx.fee, &t)));
            items.push(("action", tx.action.to_string()));
        }
        if let Some(e) = &s.error {
            items.push(("error", format!("{} ({})", e.message, e.code)));
        }
        let mut text = rows(&items);
        for event in &lookup.events {
            text.push_str(&format!("  {}\n", output::event_json(event, &t)));
        }
        Ok(text)
    })
}

fn reward_kind(kind: &RewardKind) -> String {
    match kind {
        RewardKind::Validator => "validators".into(),
        RewardKind::Service(s) => s.to_string(),
    }
}

fn epoch_text(r: &EpochRewards, t: &TokenInfo) -> String {
    let mut text = rows(&[
        (
            "epoch",
            format!("{} (paid at height {})", r.epoch, r.height),
        ),
        ("emission", tokens(r.emission, t)),
        ("minted", tokens(r.minted, t)),
        ("unallocated", tokens(r.unallocated, t)),
    ]);
    for b in &r.buckets {
        text.push_str(&format!(
            "  {:<10} allocation {}  minted {}  work units {}\n",
            reward_kind(&b.kind),
            tokens(b.allocation, t),
            tokens(b.minted, t),
            b.work_units
        ));
    }
    for e in &r.rewards {
        text.push_str(&format!(
            "  {} {:<10} {}\n",
            e.account,
            reward_kind(&e.kind),
            tokens(e.amount, t)
        ));
    }
    text
}

pub fn rewards(ctx: &Ctx, args: RewardsArgs) -> anyhow::Result<()> {
    if let Some(account) = &args.account {
        let address = parse_address(account)?;
        let r: AccountRewardsResponse = ctx.client.get(&format!(
            "/v1/accounts/{address}/rewards?limit={}",
            args.limit
        ))?;
        return ctx.out.emit(&r, || {
            let t = ctx.token()?;
            let mut text = format!("rewards of {}\n", r.address);
            for e in &r.epochs {
                let parts: Vec<String> = e
                    .entries
                    .iter()
                    .map(|x| format!("{} {}", x.kind, tokens(x.amount, &t)))
                    .collect();
                text.push_str(&format!(
                    "  epoch {:<6} {}  ({})\n",
                    e.epoch,
                    tokens(e.total, &t),
                    parts.join(", ")
                ));
            }
            if r.epochs.is_empty() {
                text.push_str("  none yet\n");
            }
            Ok(text)
        });
    }
    let epoch = match args.epoch {
        Some(epoch) => epoch,
        None => {
            // Epoch e is paid by the block at height (e + 1) * epoch_blocks.
            let s: StatusResponse = ctx.client.get("/v1/status")?;
            let completed = s.height / s.epoch_blocks.max(1);
            if completed == 0 {
                return Err(CodedError::new(
                    "unknown_epoch",
                    format!(
                        "no epoch has completed yet (height {}, epochs of {} blocks)",
                        s.height, s.epoch_blocks
                    ),
                )
                .into());
            }
            completed - 1
        }
    };
    let r: EpochRewards = ctx.client.get(&format!("/v1/rewards/{epoch}"))?;
    ctx.out.emit(&r, || Ok(epoch_text(&r, &ctx.token()?)))
}

pub fn supply(ctx: &Ctx) -> anyhow::Result<()> {
    let s: SupplyResponse = ctx.client.get("/v1/supply")?;
    ctx.out.emit(&s, || {
        let t = ctx.token()?;
        let usd = |micro: u64| format!("${}", Amount(u128::from(micro)).to_decimal(6));
        Ok(rows(&[
            ("total", tokens(s.total, &t)),
            ("initial", tokens(s.initial, &t)),
            ("minted", tokens(s.minted, &t)),
            ("burned", tokens(s.burned, &t)),
            ("data credits", format!("{} DC", s.data_credits_outstanding)),
            (
                "token price",
                format!(
                    "{} (set at height {})",
                    usd(s.token_price_usd_micro),
                    s.price_updated_height
                ),
            ),
            (
                "next price",
                format!(
                    "{} after height {} ({} oracle report{})",
                    usd(s.next_token_price_usd_micro),
                    s.next_price_height,
                    s.oracle_reports,
                    if s.oracle_reports == 1 { "" } else { "s" }
                ),
            ),
            ("DC price", usd(s.dc_price_usd_micro)),
        ]))
    })
}
