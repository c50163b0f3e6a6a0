//! The one list of service command groups: `depin <service> …`. Registering a group here adds
//! it to the command line; its verbs live in the service's own module and call the service's
//! client library.

use crate::Ctx;
use clap::{ArgMatches, Command, Subcommand};
use depin_types::ServiceKind;

type RunGroup = Box<dyn Fn(&Ctx, &ArgMatches) -> anyhow::Result<()>>;

/// A service's command group.
pub struct ServiceGroup {
    pub service: ServiceKind,
    about: &'static str,
    augment: fn(Command) -> Command,
    run: RunGroup,
}

impl ServiceGroup {
    fn new<C: Subcommand + 'static>(
        service: ServiceKind,
        about: &'static str,
        run: fn(&Ctx, C) -> anyhow::Result<()>,
    ) -> ServiceGroup {
        ServiceGroup {
            service,
            about,
            augment: C::augment_subcommands,
            run: Box::new(move |ctx, matches| run(ctx, C::from_arg_matches(matches)?)),
        }
    }

    /// The `depin <service>` command with its verbs.
    pub fn command(&self) -> Command {
        // clap keeps command names for the process's life; three short names, once.
        let name: &'static str = Box::leak(self.service.to_string().into_boxed_str());
        (self.augment)(
            Command::new(name)
                .about(self.about)
                .subcommand_required(true)
                .arg_required_else_help(true),
        )
    }

    /// Runs the verb `matches` (the group's own matches) names.
    pub fn run(&self, ctx: &Ctx, matches: &ArgMatches) -> anyhow::Result<()> {
        (self.run)(ctx, matches)
    }
}

/// Every service's command group, in the order `depin --help` lists them.
pub fn registered() -> Vec<ServiceGroup> {
    vec![
        ServiceGroup::new(
            depin_protocol::storage::SERVICE,
            "Store files on the network and get them back",
            crate::storagecmd::run,
        ),
        ServiceGroup::new(
            depin_protocol::compute::SERVICE,
            "Run WebAssembly jobs on providers, verified by replicas",
            crate::computecmd::run,
        ),
        ServiceGroup::new(
            depin_protocol::coverage::SERVICE,
            "Hotspots and devices of the wireless coverage service",
            crate::coveragecmd::run,
        ),
        ServiceGroup::new(
            depin_protocol::render::SERVICE,
            "Render Blender scenes on providers, checked by re-rendering before they are paid",
            crate::rendercmd::run,
        ),
        ServiceGroup::new(
            depin_protocol::video::SERVICE,
            "Pay orchestrators for live transcoding with probabilistic tickets",
            crate::videocmd::run,
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_protocol_service_has_a_command_group() {
        let groups: Vec<_> = super::registered().iter().map(|g| g.service).collect();
        let protocol: Vec<_> = depin_protocol::services::builtin()
            .iter()
            .map(|m| m.service())
            .collect();
        assert_eq!(groups, protocol);
    }
}
