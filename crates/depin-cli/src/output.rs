//! Human and JSON printing. With `--json` every command prints exactly one JSON object on stdout
//! (amounts as strings of base units); otherwise aligned, whole-token text.

use depin_node::api_types::TokenInfo;
use depin_protocol::Event;
use depin_types::Amount;
use serde::Serialize;

/// Where a command's result goes.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
}

impl Printer {
    /// Prints `value` as one JSON object with `--json`, otherwise the text `human` builds (only
    /// called in human mode, so it may fetch what it needs for display).
    pub fn emit<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> anyhow::Result<String>,
    ) -> anyhow::Result<()> {
        let text = if self.json {
            serde_json::to_string_pretty(value)?
        } else {
            human()?
        };
        print_stdout(text.trim_end());
        Ok(())
    }
}

/// Prints one line block to stdout. A closed pipe (`depin ... | head`) is not an error.
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
}

/// `12.5 DPN`
pub fn tokens(amount: Amount, token: &TokenInfo) -> String {
    format!("{} {}", amount.to_decimal(token.decimals), token.symbol)
}

/// Rows of `label  value`, labels padded to one column.
pub fn rows(items: &[(&str, String)]) -> String {
    let width = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    items
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One line saying what an event did.
pub fn event(event: &Event, token: &TokenInfo) -> String {
    let t = |a: &Amount| tokens(*a, token);
    match event {
        Event::FeePaid { to, amount } => format!("fee {} paid to {to}", t(amount)),
        Event::Transfer { from, to, amount } => format!("transfer {} {from} -> {to}", t(amount)),
        Event::Bonded { amount } => format!("bonded {}", t(amount)),
        Event::Unbonding {
            amount,
            release_height,
        } => format!("unbonding {} until height {release_height}", t(amount)),
        Event::Withdrawn { amount } => format!("withdrew {}", t(amount)),
        Event::ProviderRegistered => "provider registered".into(),
        Event::ProviderUpdated => "provider updated".into(),
        Event::ProviderDeregistered => "provider deregistered".into(),
        Event::DataCreditsMinted {
            tokens_burned,
            data_credits,
            price_usd_micro,
        } => format!(
            "burned {} for {data_credits} DC at ${}",
            t(tokens_burned),
            Amount(u128::from(*price_usd_micro)).to_decimal(6)
        ),
        Event::OraclePriceReported {
            oracle,
            price_usd_micro,
        } => format!(
            "oracle {oracle} reported ${}; it counts from the next epoch",
            Amount(u128::from(*price_usd_micro)).to_decimal(6)
        ),
        Event::OraclePriceSet { price_usd_micro } => format!(
            "oracle price set to ${}",
            Amount(u128::from(*price_usd_micro)).to_decimal(6)
        ),
        Event::WorkRecorded {
            service,
            provider,
            units,
        } => format!("{service} work of {units} units recorded for {provider}"),
        Event::Slashed {
            provider,
            service,
            amount,
            reason,
        } => format!("{provider} slashed {} on {service}: {reason}", t(amount)),
        Event::ValidatorSlashed {
            validator,
            amount,
            reason,
            ..
        } => format!(
            "validator {validator} slashed {} and barred from the validator set: {reason}",
            t(amount)
        ),
        Event::ServicePaid {
            service,
            consumer,
            provider,
            data_credits,
            tokens_minted,
        } => format!(
            "{service}: {consumer} paid {data_credits} DC, {provider} earned {}",
            t(tokens_minted)
        ),
        Event::Service { service, .. } => format!("{service} event"),
        Event::ServiceHookFailed {
            service,
            hook,
            reason,
        } => format!("{service} {hook} hook failed (its writes were dropped): {reason}"),
        Event::ValidatorRegistered { consensus_address } => {
            format!("validator candidate at {consensus_address}")
        }
        Event::ValidatorDeregistered => "validator candidacy withdrawn".into(),
    }
}

/// A unit enum's name as a user reads it (`active`, `done`, `eu868`): its serde name in
/// lower case, never Rust `Debug` text.
pub fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name.to_lowercase(),
        Ok(other) => other.to_string(),
        Err(_) => "unknown".into(),
    }
}

/// An optional number as a user reads it: the number, or `-`.
pub fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// One line for an event as the node wrote it in JSON; an event this build cannot read is
/// shown field by field.
pub fn event_json(value: &serde_json::Value, token: &TokenInfo) -> String {
    // A service event as its service decoded it on the node: `storage: deal opened id=…`.
    if value["type"] == "service"
        && let (Some(service), Some(decoded)) = (value["service"].as_str(), value.get("event"))
    {
        return format!("{service}: {}", fields_json(decoded, token));
    }
    if let Ok(e) = serde_json::from_value::<Event>(value.clone()) {
        return event(&e, token);
    }
    fields_json(value, token)
}

/// A tagged JSON object field by field: its `type` in words, then `key=value` pairs.
fn fields_json(value: &serde_json::Value, token: &TokenInfo) -> String {
    let Some(fields) = value.as_object() else {
        return value.to_string();
    };
    let mut text = fields
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("event")
        .replace('_', " ");
    for (k, v) in fields.iter().filter(|(k, _)| k.as_str() != "type") {
        let shown = match v.as_str() {
            // Token amounts are strings of base units.
            Some(units) => match units.parse::<u128>() {
                Ok(units) if k == "amount" || k.starts_with("tokens_") => {
                    tokens(Amount(units), token)
                }
                _ => units.to_string(),
            },
            None => match v.as_array() {
                Some(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
                None => v.to_string(),
            },
        };
        text.push_str(&format!(" {k}={shown}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_amounts_and_times() {
        let token = TokenInfo {
            symbol: "DPN".into(),
            decimals: 6,
        };
        assert_eq!(tokens(Amount(12_500_000), &token), "12.5 DPN");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(
            rows(&[("a", "1".into()), ("bbb", "2".into())]),
            "a    1\nbbb  2\n"
        );
    }
}
