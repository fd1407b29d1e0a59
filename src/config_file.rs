//! The TOML configuration file (`--config`): remote agents, routes and plans.
//!
//! ```toml
//! default_agent = "echo"
//!
//! [[agents]]
//! name = "echo"
//! url = "http://127.0.0.1:9090"
//!
//! [[routes]]
//! skill = "translate"
//! agent = "translator"
//!
//! [[plans]]
//! name = "research"
//! fanout = ["search", "papers"]
//! join = "all"
//!
//! [plan_limits]
//! width = 128
//! depth = 3
//! tasks = 1024
//!
//! [push]
//! allow = ["10.20.0.0/16", "hooks.internal.example"]
//! ```

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use switchyard_engine::Store;
use switchyard_engine::plan::{PlanLimits, PlanSpec};
use switchyard_engine::route::RoutingRules;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    agents: Vec<AgentEntry>,
    #[serde(default)]
    routes: Vec<RouteEntry>,
    default_agent: Option<String>,
    #[serde(default)]
    plans: Vec<PlanSpec>,
    #[serde(default)]
    plan_limits: LimitsEntry,
    #[serde(default)]
    push: PushEntry,
}

/// `[push]`: where webhooks may point beyond the public internet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushEntry {
    /// CIDRs, addresses and host names webhooks may reach although the SSRF
    /// guard would refuse them (loopback, private, link-local, …).
    #[serde(default)]
    allow: Vec<String>,
}

/// `[plan_limits]`: how wide and deep a fan-out or pipeline may grow.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsEntry {
    /// Children of one fan-out, or steps of one pipeline.
    width: usize,
    /// Levels of plans within plans.
    depth: usize,
    /// Tasks one client task may create in all.
    tasks: usize,
}

impl Default for LimitsEntry {
    fn default() -> Self {
        let d = PlanLimits::default();
        LimitsEntry { width: d.width, depth: d.depth, tasks: d.tasks }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    name: String,
    url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    skill: String,
    agent: String,
}

impl FileConfig {
    /// Reads and checks the file; no file means no agents and no routes.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: FileConfig = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for agent in &config.agents {
            anyhow::ensure!(
                agent.url.starts_with("http://") || agent.url.starts_with("https://"),
                "agent {:?}: url must be http(s), got {:?}",
                agent.name,
                agent.url
            );
        }
        let known = |name: &str| config.agents.iter().any(|a| a.name == name);
        for route in &config.routes {
            anyhow::ensure!(
                known(&route.agent),
                "route for skill {:?} names unknown agent {:?}",
                route.skill,
                route.agent
            );
        }
        if let Some(name) = &config.default_agent {
            anyhow::ensure!(known(name), "default_agent {name:?} is not among [[agents]]");
        }
        config.egress()?;
        let limits = config.plan_limits();
        anyhow::ensure!(
            limits.width >= 1 && limits.depth >= 1 && limits.tasks >= 1,
            "[plan_limits]: width, depth and tasks must be at least 1"
        );
        for (i, plan) in config.plans.iter().enumerate() {
            plan.validate(&limits).map_err(|e| anyhow::anyhow!("[[plans]] #{}: {e}", i + 1))?;
            anyhow::ensure!(
                !config.plans[..i].iter().any(|p| p.name == plan.name),
                "[[plans]]: plan {:?} is defined twice",
                plan.name
            );
        }
        Ok(config)
    }

    /// The routing rules the file configures.
    pub(crate) fn routing(&self) -> RoutingRules {
        RoutingRules {
            skills: self.routes.iter().map(|r| (r.skill.clone(), r.agent.clone())).collect(),
            default_agent: self.default_agent.clone(),
        }
    }

    /// The SSRF guard with the file's `[push] allow` list.
    pub(crate) fn egress(&self) -> anyhow::Result<switchyard_engine::egress::Egress> {
        switchyard_engine::egress::Egress::new(&self.push.allow).map_err(anyhow::Error::msg)
    }

    /// The limits on fan-outs and pipelines.
    pub(crate) fn plan_limits(&self) -> PlanLimits {
        let l = &self.plan_limits;
        PlanLimits { width: l.width, depth: l.depth, tasks: l.tasks }
    }

    /// Registers the file's agents and plans (adding or updating; those
    /// added with the CLI or the admin API are left alone).
    pub(crate) async fn register(&self, store: &Store) -> anyhow::Result<()> {
        for agent in &self.agents {
            store.agent_upsert(&agent.name, &agent.url).await.with_context(|| format!("registering {}", agent.name))?;
        }
        for plan in &self.plans {
            store.plan_put(plan).await.with_context(|| format!("registering plan {}", plan.name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_bad_references_are_refused() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("switchyard.example.toml");
        let config = FileConfig::load(Some(&example)).expect("the shipped example is valid");
        assert_eq!(config.routing().default_agent.as_deref(), Some("demo"));

        let dir = std::env::temp_dir().join(format!("switchyard-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "default_agent = \"ghost\"\n").expect("write");
        assert!(FileConfig::load(Some(&bad)).is_err());
        std::fs::write(&bad, "[[agents]]\nname = \"a\"\nurl = \"ftp://x\"\n").expect("write");
        assert!(FileConfig::load(Some(&bad)).is_err());
        std::fs::write(&bad, "[[agent]]\nname = \"typo\"\n").expect("write");
        assert!(FileConfig::load(Some(&bad)).is_err(), "unknown keys are errors, not silence");
        std::fs::write(&bad, "[[plans]]\nname = \"p\"\nfanout = [\"a\"]\npipeline = [\"b\"]\n").expect("write");
        let err = FileConfig::load(Some(&bad)).expect_err("two kinds").to_string();
        assert!(err.contains("exactly one"), "{err}");
        std::fs::write(&bad, "[[plans]]\nname = \"p\"\nfanout = [\"a\"]\njoin = \"quorum\"\nquorum = 2\n")
            .expect("write");
        assert!(FileConfig::load(Some(&bad)).is_err(), "a quorum larger than the fan-out");
    }
}
