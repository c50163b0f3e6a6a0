//! The one list of services the protocol runs. Registering a service here gives it its
//! genesis section (`[services.<name>]`, decoded and checked by the service), its reward share
//! and minimum stake (per-service maps in genesis), its transactions, typed events and hooks.
//! Nothing else in the ledger names a service.

use crate::params::{Genesis, GenesisError, ServiceParams};
use crate::service::ServiceModule;
use depin_types::ServiceKind;
use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Every service of the protocol, in the order their hooks run.
pub fn builtin() -> Vec<Arc<dyn ServiceModule>> {
    vec![
        Arc::new(crate::storage::StorageModule),
        Arc::new(crate::compute::ComputeModule),
        Arc::new(crate::coverage::CoverageModule),
        Arc::new(crate::render::RenderModule),
        Arc::new(crate::video::VideoModule),
    ]
}

/// What a devnet genesis gives a service: its emission share, its minimum stake in whole
/// tokens and its genesis section.
#[derive(Debug, Clone)]
pub struct DevnetDefaults {
    pub reward_bps: u16,
    pub min_stake_tokens: u64,
    pub params: toml::Table,
}

impl DevnetDefaults {
    pub fn new<P: ServiceParams>(reward_bps: u16, min_stake_tokens: u64, params: &P) -> Self {
        DevnetDefaults {
            reward_bps,
            min_stake_tokens,
            params: crate::params::params_section(params),
        }
    }
}

/// Service `P`'s section of `genesis`, decoded and checked, ready for its hooks
/// ([`crate::ServiceContext::params`]).
pub fn load_params<P: ServiceParams>(
    genesis: &Genesis,
) -> Result<Arc<dyn Any + Send + Sync>, GenesisError> {
    Ok(Arc::new(genesis.service_params::<P>()?))
}

/// Checks that genesis names exactly the registered services: a section, a reward share and a
/// minimum stake for each (the section decoded and checked by its service), nothing unknown.
pub fn check_genesis(genesis: &Genesis) -> Result<(), GenesisError> {
    let modules = builtin();
    let registered: BTreeSet<ServiceKind> = modules.iter().map(|m| m.service()).collect();
    let sections: [(&'static str, Vec<ServiceKind>); 3] = [
        ("services", genesis.services.keys().copied().collect()),
        (
            "reward_split.services_bps",
            genesis.reward_split.services_bps.keys().copied().collect(),
        ),
        (
            "staking.min_stake",
            genesis.staking.min_stake.keys().copied().collect(),
        ),
    ];
    for (section, named) in &sections {
        if let Some(service) = named.iter().find(|s| !registered.contains(s)) {
            return Err(GenesisError::UnknownService {
                section,
                service: *service,
            });
        }
    }
    for module in &modules {
        let service = module.service();
        if !genesis.services.contains_key(&service) {
            return Err(GenesisError::MissingService(service));
        }
        for (section, named) in &sections[1..] {
            if !named.contains(&service) {
                return Err(GenesisError::MissingServiceEntry { section, service });
            }
        }
        module.load_params(genesis)?;
    }
    Ok(())
}
