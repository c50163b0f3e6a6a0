//! Owns: the `depin` binary: node run, devnet, and every client verb over the client libraries.
//! Must not: hold protocol rules or a service's pipeline: it parses flags, calls libraries and prints.
//!
//! depin: the one binary of the network. `depin node run` starts a node, `depin devnet` starts a
//! local network of node processes, and every other verb is a client of a node's HTTP API.
//!
//! This crate holds no protocol rules: it builds and signs transactions with depin-protocol's
//! types and leaves every check to the node, which answers with a stable error code.

mod client;
mod computecmd;
mod coveragecmd;
mod devnet;
mod keycmd;
mod nodecmd;
mod output;
mod progress;
mod query;
mod rendercmd;
mod renderjob;
mod services;
mod simcmd;
mod storagecmd;
mod txcmd;
mod videocmd;
mod videodispute;
mod videopublish;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use client::{Client, CodedError};
use output::Printer;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "depin",
    version,
    about = "depin: node, devnet and client of the depin network"
)]
struct Cli {
    /// API URL of the node to talk to.
    #[arg(
        long,
        global = true,
        env = "DEPIN_RPC",
        default_value = "http://127.0.0.1:7300"
    )]
    rpc: String,
    /// Print exactly one JSON object (amounts as strings of base units) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, show, export and import key files.
    #[command(subcommand)]
    Key(keycmd::KeyCommand),
    /// Set up and run a node.
    #[command(subcommand)]
    Node(nodecmd::NodeCommand),
    /// Run a local network of node processes (resumes the one in --dir if there is one).
    Devnet(devnet::DevnetArgs),
    /// Look at accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Send tokens to another account.
    Transfer(txcmd::TransferArgs),
    /// Bond, unbond and withdraw stake.
    #[command(subcommand)]
    Stake(txcmd::StakeCommand),
    /// Register, update and look up providers.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Data Credits: burn tokens to buy usage credits.
    #[command(subcommand)]
    Dc(DcCommand),
    /// The token price oracle (only the genesis oracle keys may report it).
    #[command(subcommand)]
    Oracle(OracleCommand),
    /// The chain as the node sees it.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Look at blocks.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Look at transactions.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Epoch rewards: one epoch, one account's history, or the latest completed epoch.
    Rewards(query::RewardsArgs),
    /// Token supply, Data Credits outstanding and prices.
    Supply,
    /// Simulate a world of service providers through the real protocols.
    #[command(subcommand)]
    Sim(simcmd::SimCommand),
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Balance, nonce, Data Credits and stake of an account.
    Show { address: String },
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Bond-backed registration offering services with capacity and prices.
    Register(txcmd::ProviderArgs),
    /// Replace the services, capacity, prices and location of a registered provider.
    Update(txcmd::ProviderArgs),
    /// Remove the provider record (the stake stays bonded until unbonded).
    Deregister(txcmd::TxOpts),
    /// One provider.
    Show { address: String },
    /// Registered providers, in address order.
    List(query::ListArgs),
}

#[derive(Subcommand)]
enum DcCommand {
    /// Burn tokens to mint Data Credits at the oracle price.
    Buy(txcmd::AmountArgs),
}

#[derive(Subcommand)]
enum OracleCommand {
    /// Report the token price in USD per whole token, e.g. --usd 1.25: the median of the
    /// oracle keys' reports becomes the price at the next epoch boundary, moved at most the
    /// genesis bound per epoch.
    SetPrice(txcmd::SetPriceArgs),
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Chain id, height, head, epoch and the node's role.
    Status,
}

#[derive(Subcommand)]
enum BlockCommand {
    /// A block by height, hash or `latest`.
    Show { id: String },
}

#[derive(Subcommand)]
enum TxCommand {
    /// A transaction's status, block and events.
    Show { hash: String },
}

/// What every client verb needs: the node's API and where to print.
pub struct Ctx {
    pub client: Client,
    pub out: Printer,
}

fn main() -> ExitCode {
    // The ledger's verbs come from `Cli`; each service adds its own group (`services`).
    let groups = services::registered();
    let command = groups.iter().fold(Cli::command(), |command, group| {
        command.subcommand(group.command())
    });
    let matches = command.get_matches();
    let service_group = matches
        .subcommand()
        .and_then(|(name, sub)| Some((groups.iter().find(|g| g.service.as_str() == name)?, sub)));
    let cli = match service_group {
        Some(_) => None,
        None => match Cli::from_arg_matches(&matches) {
            Ok(cli) => Some(cli),
            Err(e) => e.exit(),
        },
    };
    let json = matches.get_flag("json");
    let rpc = matches
        .get_one::<String>("rpc")
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:7300".into());
    let out = Printer { json };
    let ctx = Ctx {
        client: Client::new(&rpc),
        out,
    };
    let result = match (service_group, cli) {
        (Some((group, sub)), _) => group.run(&ctx, sub),
        (None, Some(cli)) => dispatch(&ctx, cli.command),
        (None, None) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error, out);
            ExitCode::FAILURE
        }
    }
}

fn dispatch(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Key(cmd) => keycmd::run(ctx.out, cmd),
        Command::Node(cmd) => nodecmd::run(ctx.out, cmd),
        Command::Devnet(args) => devnet::run(ctx.out, args),
        Command::Account(AccountCommand::Show { address }) => query::account(ctx, &address),
        Command::Transfer(args) => txcmd::transfer(ctx, args),
        Command::Stake(cmd) => txcmd::stake(ctx, cmd),
        Command::Provider(cmd) => match cmd {
            ProviderCommand::Register(args) => txcmd::provider(ctx, args, false),
            ProviderCommand::Update(args) => txcmd::provider(ctx, args, true),
            ProviderCommand::Deregister(opts) => txcmd::deregister(ctx, opts),
            ProviderCommand::Show { address } => query::provider(ctx, &address),
            ProviderCommand::List(args) => query::providers(ctx, args),
        },
        Command::Dc(DcCommand::Buy(args)) => txcmd::buy_data_credits(ctx, args),
        Command::Oracle(OracleCommand::SetPrice(args)) => txcmd::set_price(ctx, args),
        Command::Chain(ChainCommand::Status) => query::status(ctx),
        Command::Block(BlockCommand::Show { id }) => query::block(ctx, &id),
        Command::Tx(TxCommand::Show { hash }) => query::tx(ctx, &hash),
        Command::Rewards(args) => query::rewards(ctx, args),
        Command::Supply => query::supply(ctx),
        Command::Sim(cmd) => simcmd::run_sim(ctx.out, cmd),
    }
}

/// `error: <message> (<code>)` on stderr; with `--json` also the error object on stdout, so a
/// script always gets one JSON object.
fn report(error: &anyhow::Error, out: Printer) {
    let text = format!("{error:#}");
    eprintln!("error: {text}");
    if out.json {
        let code = error
            .chain()
            .find_map(|e| e.downcast_ref::<CodedError>())
            .map(|c| c.code.clone());
        let message = match &code {
            Some(code) => text
                .strip_suffix(&format!(" ({code})"))
                .unwrap_or(&text)
                .to_string(),
            None => text.clone(),
        };
        let body = serde_json::json!({
            "error": { "code": code.unwrap_or_else(|| "cli_error".into()), "message": message }
        });
        output::print_stdout(&body.to_string());
    }
}
