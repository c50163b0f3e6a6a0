//! The OpenAPI 3.1 document served at `/v1/openapi.json`: the ledger's paths here, each
//! service's from its registration (`crate::services`). A test checks that the paths
//! documented are exactly the routes served.

use serde_json::{Value, json};

pub(crate) fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

pub(crate) fn ok_response(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema}}
    })
}

pub(crate) fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string"}})
}

pub(crate) fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description,
           "schema": {"type": "string"}})
}

pub(crate) fn operation(
    summary: &str,
    params: Vec<Value>,
    ok: Value,
    errors: &[(&str, &str)],
) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert("200".into(), ok);
    for (status, description) in errors {
        responses.insert((*status).into(), error_response(description));
    }
    json!({"summary": summary, "parameters": params, "responses": responses})
}

pub(crate) fn object(description: &str) -> Value {
    json!({"type": "object", "description": description})
}

pub fn document() -> Value {
    let bad_request = (
        "400",
        "Malformed parameter (invalid_address, invalid_hash, invalid_number)",
    );
    let mut submit = operation(
        "Submit a signed transaction (hex of its canonical borsh bytes)",
        vec![],
        json!({"description": "unused"}),
        &[
            (
                "400",
                "malformed_tx, bad_signature, wrong_chain, fee_too_low, malformed_request",
            ),
            (
                "403",
                "unauthorized (e.g. oracle price set by a non-authority)",
            ),
            ("409", "already_known, nonce_taken, nonce_too_far_ahead"),
            ("413", "tx_too_large"),
            (
                "422",
                "nonce_replayed, nonce_gap, insufficient_balance, amount_overflow, unknown_account, stake_below_minimum, ...",
            ),
            ("503", "mempool_full"),
        ],
    );
    if let Some(responses) = submit.get_mut("responses").and_then(Value::as_object_mut) {
        responses.remove("200");
        responses.insert(
            "202".into(),
            ok_response(
                "Accepted into the mempool",
                json!({"type": "object", "properties": {"hash": {"type": "string"}, "status": {"type": "string"}}}),
            ),
        );
    }
    submit["requestBody"] = json!({
        "required": true,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["tx"],
            "properties": {"tx": {"type": "string", "description": "hex of SignedTransaction bytes"}}
        }}}
    });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "depin node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Ledger, accounts, blocks, transactions, providers and rewards of a depin node. Amounts are strings of integer base units; addresses are bech32m `depin1...`; hashes are 64 hex characters. Errors are {\"error\":{\"code\",\"message\"}}."
        },
        "paths": {
            "/v1/status": {"get": operation("Node and chain status", vec![], ok_response("Status", object("StatusResponse")), &[])},
            "/v1/params": {"get": operation("Genesis parameters", vec![], ok_response("Genesis", object("Genesis")), &[])},
            "/v1/validators": {"get": operation("Validator sets of the current and next validator-set era, and every candidate with its bonded stake", vec![], ok_response("Validators", object("ValidatorsResponse")), &[])},
            "/v1/supply": {"get": operation("Token supply, Data Credits and oracle price", vec![], ok_response("Supply", object("SupplyResponse")), &[])},
            "/v1/accounts/{address}": {"get": operation("Account balance, nonce, Data Credits and stake",
                vec![path_param("address", "depin1... address")],
                ok_response("Account", object("AccountResponse")),
                &[bad_request, ("404", "unknown_account")])},
            "/v1/accounts/{address}/rewards": {"get": operation("Rewards paid to an account, newest epoch first",
                vec![path_param("address", "depin1... address"), query_param("limit", "most epochs (default 20, max 1000)")],
                ok_response("Rewards", object("AccountRewardsResponse")), &[bad_request])},
            "/v1/blocks/{id}": {"get": operation("A finalized block by height, hash or `latest`",
                vec![path_param("id", "height, 64-hex hash or latest")],
                ok_response("Block", object("BlockResponse")), &[bad_request, ("404", "unknown_block")])},
            "/v1/blocks/{height}/raw": {"get": operation("Canonical block and finality bytes (hex), for followers",
                vec![path_param("height", "block height")],
                ok_response("Raw block", object("RawBlockResponse")), &[bad_request, ("404", "unknown_block")])},
            "/v1/txs": {"post": submit},
            "/v1/txs/{hash}": {"get": operation("A transaction: committed (with receipt events), pending or dropped (with reason)",
                vec![path_param("hash", "transaction hash")],
                ok_response("Transaction status", object("TxStatusResponse")), &[bad_request, ("404", "unknown_tx")])},
            "/v1/providers": {"get": operation("Registered providers in address order",
                vec![query_param("limit", "most providers (default 100, max 1000)"), query_param("after", "address to start after")],
                ok_response("Providers", object("ProvidersResponse")), &[bad_request])},
            "/v1/providers/{address}": {"get": operation("One provider, with reputation and failed proofs",
                vec![path_param("address", "depin1... address")],
                ok_response("Provider", object("ProviderView")), &[bad_request, ("404", "not_a_provider")])},
            "/v1/rewards/{epoch}": {"get": operation("Emission and rewards of an ended epoch",
                vec![path_param("epoch", "epoch number")],
                ok_response("Epoch rewards", object("EpochRewards")), &[bad_request, ("404", "unknown_epoch")])},
            "/v1/openapi.json": {"get": operation("This document", vec![], ok_response("OpenAPI document", object("OpenAPI")), &[])},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
        },
        "components": {"schemas": {"Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}
        }}}
    });
    // Each registered service documents its own routes, under /v1/<service>.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for service in crate::services::registered() {
            for (path, item) in service.openapi_paths() {
                paths.insert(format!("/v1/{}{path}", service.service()), item);
            }
        }
    }
    doc
}

/// The 400 answer of an operation with a malformed parameter.
pub(crate) const BAD_REQUEST: (&str, &str) = (
    "400",
    "Malformed parameter (invalid_address, invalid_hash, invalid_number)",
);

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_served_is_documented_and_every_documented_route_served() {
        let doc = super::document();
        let served = crate::api::served_routes();
        for (method, path) in &served {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is served but missing from the OpenAPI document"
            );
        }
        let paths = doc["paths"].as_object().expect("paths");
        for (path, operations) in paths {
            for method in operations.as_object().expect("operations").keys() {
                assert!(
                    served.iter().any(|(m, p)| m == method && p == path),
                    "{method} {path} is documented but not served"
                );
            }
        }
    }
}
