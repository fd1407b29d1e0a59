//! Plans: one client task carried by several remote agents, in parallel (a
//! fan-out joined by a policy) or in sequence (a pipeline).
//!
//! A [`PlanSpec`] is what an operator writes (in the config file or through
//! the admin API) and what a client may send ad hoc in message metadata; it
//! names agents, skills and other plans. At accept it is resolved against
//! the registered agents into a [`Node`], a tree of concrete agents, which
//! is stored with the task: everything after that (creating a pipeline's
//! next step, judging a join) reads the stored tree, never the registry, so
//! a plan changed or an agent removed meanwhile does not change a task that
//! is already running.

use std::collections::HashMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::AgentRecord;
use crate::id::TaskId;
use crate::route::NoRoute;
use crate::task::TaskRecord;

/// A plan as configured: exactly one of `agent`, `fanout`, `fanout_skill`
/// and `pipeline`. Members are names of agents or of other plans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// The skill id clients pick it with (over the admin API, the path's).
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Delegate to this one agent (or plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Run these in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<Vec<String>>,
    /// Run every healthy registered agent offering this skill in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout_skill: Option<String>,
    /// How a fan-out's children decide the outcome: `all` (default), `any`, `quorum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// With `join = "quorum"`: how many children must complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// With `join = "all"`: complete with what succeeded when some fail.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_partial: bool,
    /// Run these in order, each step's artifacts the next step's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Vec<String>>,
}

/// How a fan-out's children decide the parent's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Join {
    /// Completes when every child completed; fails when one fails (unless
    /// partial results are allowed).
    All,
    /// The first child to complete wins; the others are canceled.
    Any,
    /// Completes when `n` children completed; fails once that is impossible.
    Quorum { n: u32 },
}

/// A resolved plan: what a task (and each of its children) runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    /// One remote agent.
    Agent { agent: String },
    /// Children in parallel, joined by a policy.
    Fanout {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<String>,
        children: Vec<Node>,
        join: Join,
        #[serde(default)]
        allow_partial: bool,
    },
    /// Children one after the other.
    Pipeline {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<String>,
        steps: Vec<Node>,
    },
}

impl Node {
    /// How a child running this node is named to clients: its agent, or its plan.
    pub fn label(&self) -> String {
        match self {
            Node::Agent { agent } => agent.clone(),
            Node::Fanout { plan, .. } => plan.clone().unwrap_or_else(|| "fanout".into()),
            Node::Pipeline { plan, .. } => plan.clone().unwrap_or_else(|| "pipeline".into()),
        }
    }

    /// Tasks this node creates in all, itself excluded, if every step runs.
    pub fn descendants(&self) -> usize {
        match self {
            Node::Agent { .. } => 0,
            Node::Fanout { children: c, .. } | Node::Pipeline { steps: c, .. } => {
                c.iter().map(|n| 1 + n.descendants()).sum()
            }
        }
    }
}

/// Bounds on what one task may fan out into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Children of one fan-out, or steps of one pipeline.
    pub width: usize,
    /// Levels of plans within plans (a plan of agents is depth 1).
    pub depth: usize,
    /// Tasks one client task may create in all.
    pub tasks: usize,
}

impl Default for PlanLimits {
    fn default() -> Self {
        PlanLimits { width: 128, depth: 3, tasks: 1024 }
    }
}

/// Why a plan cannot be used; the text is what the client or operator reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The plan itself is malformed (a client's or an operator's mistake).
    #[error("{0}")]
    Invalid(String),
    /// Well-formed, but nothing can carry it now (no such agent, none healthy).
    #[error("{0}")]
    NoRoute(String),
}

impl From<NoRoute> for PlanError {
    fn from(e: NoRoute) -> Self {
        PlanError::NoRoute(e.0)
    }
}

/// Names of plans and agents: what a config key or a URL path can hold.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl PlanSpec {
    /// Checks the shape (not the names it refers to, which may be registered later).
    pub fn validate(&self, limits: &PlanLimits) -> Result<(), PlanError> {
        let invalid = |m: String| Err(PlanError::Invalid(format!("plan {:?}: {m}", self.name)));
        if !valid_name(&self.name) {
            return invalid("a name is 1 to 64 letters, digits, '-', '_' or '.'".into());
        }
        let kinds = [self.agent.is_some(), self.fanout.is_some(), self.fanout_skill.is_some(), self.pipeline.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return invalid("needs exactly one of `agent`, `fanout`, `fanout_skill` and `pipeline`".into());
        }
        let members = self.fanout.as_ref().or(self.pipeline.as_ref());
        if let Some(members) = members {
            if members.is_empty() || members.len() > limits.width {
                return invalid(format!("lists {} members; between 1 and {} are allowed", members.len(), limits.width));
            }
            if let Some(bad) = members.iter().find(|m| !valid_name(m)) {
                return invalid(format!("{bad:?} is not a valid agent or plan name"));
            }
        }
        let fanout = self.fanout.is_some() || self.fanout_skill.is_some();
        if !fanout && (self.join.is_some() || self.quorum.is_some() || self.allow_partial) {
            return invalid("`join`, `quorum` and `allow_partial` apply to fan-outs only".into());
        }
        let join = self.join_policy()?;
        if self.allow_partial && join != Join::All {
            return invalid("`allow_partial` applies to `join = \"all\"` only".into());
        }
        if let (Join::Quorum { n }, Some(members)) = (join, &self.fanout)
            && n as usize > members.len()
        {
            return invalid(format!("a quorum of {n} cannot be met by {} members", members.len()));
        }
        if self.description.as_ref().is_some_and(|d| d.len() > 1024) {
            return invalid("the description is longer than 1024 bytes".into());
        }
        Ok(())
    }

    fn join_policy(&self) -> Result<Join, PlanError> {
        let invalid = |m: &str| Err(PlanError::Invalid(format!("plan {:?}: {m}", self.name)));
        match (self.join.as_deref().unwrap_or("all"), self.quorum) {
            ("all", None) => Ok(Join::All),
            ("any", None) => Ok(Join::Any),
            ("quorum", Some(n)) if n >= 1 => Ok(Join::Quorum { n }),
            ("quorum", _) => invalid("`join = \"quorum\"` needs `quorum = N` with N >= 1"),
            ("all" | "any", Some(_)) => invalid("`quorum` needs `join = \"quorum\"`"),
            (other, _) => invalid(&format!("unknown join {other:?}; use \"all\", \"any\" or \"quorum\"")),
        }
    }

    /// Reads an ad hoc plan from message metadata: `switchyard.fanout` (a
    /// list of names, with `join`, `quorum`, `allowPartial` beside it),
    /// `switchyard.fanoutSkill`, or `switchyard.pipeline` (a list of names).
    /// `None` when the message asks for neither.
    pub fn from_metadata(metadata: Option<&HashMap<String, Value>>) -> Result<Option<PlanSpec>, PlanError> {
        let Some(hint) = metadata.and_then(|m| m.get("switchyard")) else { return Ok(None) };
        let names = |key: &str| -> Result<Option<Vec<String>>, PlanError> {
            let Some(value) = hint.get(key) else { return Ok(None) };
            let list = value.as_array().filter(|l| l.iter().all(Value::is_string)).ok_or_else(|| {
                PlanError::Invalid(format!("message.metadata.switchyard.{key} must be a list of agent or plan names"))
            })?;
            Ok(Some(list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()))
        };
        let text = |key: &str| -> Result<Option<String>, PlanError> {
            match hint.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(PlanError::Invalid(format!("message.metadata.switchyard.{key} must be a string"))),
            }
        };
        let spec = PlanSpec {
            name: "adhoc".into(),
            description: None,
            agent: None,
            fanout: names("fanout")?,
            fanout_skill: text("fanoutSkill")?,
            join: text("join")?,
            quorum: match hint.get("quorum") {
                None => None,
                Some(q) => Some(q.as_u64().and_then(|q| u32::try_from(q).ok()).ok_or_else(|| {
                    PlanError::Invalid("message.metadata.switchyard.quorum must be a positive integer".into())
                })?),
            },
            allow_partial: match hint.get("allowPartial") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(PlanError::Invalid(
                        "message.metadata.switchyard.allowPartial must be a boolean".into(),
                    ));
                }
            },
            pipeline: names("pipeline")?,
        };
        if spec.fanout.is_none() && spec.fanout_skill.is_none() && spec.pipeline.is_none() {
            return Ok(None);
        }
        Ok(Some(spec))
    }
}

/// What a plan is resolved against: the registered agents and plans.
#[derive(Debug)]
pub struct Resolver<'a> {
    pub agents: &'a [AgentRecord],
    pub plans: &'a [PlanSpec],
    pub limits: PlanLimits,
}

impl Resolver<'_> {
    /// The plan by that name, if there is one.
    pub fn plan(&self, name: &str) -> Option<&PlanSpec> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// Resolves a plan into the tree of agents a task will run, checking
    /// every limit. Names are plans first, then agents.
    pub fn resolve(&self, spec: &PlanSpec) -> Result<Node, PlanError> {
        let node = self.resolve_at(spec, 1)?;
        let tasks = node.descendants();
        if tasks > self.limits.tasks {
            return Err(PlanError::Invalid(format!(
                "plan {:?} would create {tasks} tasks; at most {} are allowed",
                spec.name, self.limits.tasks
            )));
        }
        Ok(node)
    }

    fn resolve_at(&self, spec: &PlanSpec, depth: usize) -> Result<Node, PlanError> {
        spec.validate(&self.limits)?;
        if depth > self.limits.depth {
            return Err(PlanError::Invalid(format!(
                "plan {:?} nests plans deeper than {} levels (does a plan include itself?)",
                spec.name, self.limits.depth
            )));
        }
        let plan = (spec.name != "adhoc").then(|| spec.name.clone());
        let member = |name: &str| -> Result<Node, PlanError> {
            if let Some(inner) = self.plan(name) {
                return self.resolve_at(inner, depth + 1);
            }
            if self.agents.iter().any(|a| a.name == name) {
                return Ok(Node::Agent { agent: name.to_owned() });
            }
            Err(PlanError::NoRoute(format!("plan {:?}: no agent or plan named {name:?} is registered", spec.name)))
        };
        if let Some(agent) = &spec.agent {
            return member(agent);
        }
        if let Some(steps) = &spec.pipeline {
            let steps = steps.iter().map(|s| member(s)).collect::<Result<Vec<_>, _>>()?;
            return Ok(Node::Pipeline { plan, steps });
        }
        let join = spec.join_policy()?;
        let children = match (&spec.fanout, &spec.fanout_skill) {
            (Some(members), _) => members.iter().map(|m| member(m)).collect::<Result<Vec<_>, _>>()?,
            (None, Some(skill)) => {
                // Healthy agents only: one whose breaker is open would only
                // fail its child.
                let now = Utc::now();
                let offering: Vec<_> = self.agents.iter().filter(|a| a.offers_skill(skill)).collect();
                let healthy: Vec<Node> = offering
                    .iter()
                    .filter(|a| a.breaker_open_until.is_none_or(|until| until <= now))
                    .map(|a| Node::Agent { agent: a.name.clone() })
                    .collect();
                if healthy.is_empty() {
                    return Err(PlanError::NoRoute(if offering.is_empty() {
                        format!("plan {:?}: no registered agent offers skill {skill:?}", spec.name)
                    } else {
                        format!("plan {:?}: every agent offering skill {skill:?} is failing", spec.name)
                    }));
                }
                if healthy.len() > self.limits.width {
                    return Err(PlanError::Invalid(format!(
                        "plan {:?}: {} agents offer skill {skill:?}; at most {} children are allowed",
                        spec.name,
                        healthy.len(),
                        self.limits.width
                    )));
                }
                healthy
            }
            (None, None) => unreachable!("validated: a fan-out has members or a skill"),
        };
        if let Join::Quorum { n } = join
            && n as usize > children.len()
        {
            return Err(PlanError::NoRoute(format!(
                "plan {:?}: a quorum of {n} cannot be met by {} children",
                spec.name,
                children.len()
            )));
        }
        Ok(Node::Fanout { plan, children, join, allow_partial: spec.allow_partial })
    }
}

/// How a fan-out's children stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub completed: usize,
    /// Failed, canceled or rejected.
    pub failed: usize,
    /// Not terminal yet.
    pub open: usize,
}

/// What a join decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: wait for more children.
    Pending,
    Completed,
    Failed,
}

/// The join's decision for the children as they stand.
pub fn judge(join: Join, allow_partial: bool, t: Tally) -> Verdict {
    match join {
        Join::All if t.failed > 0 && !allow_partial => Verdict::Failed,
        Join::All if t.open > 0 => Verdict::Pending,
        Join::All if t.completed > 0 => Verdict::Completed,
        Join::All => Verdict::Failed,
        Join::Any if t.completed > 0 => Verdict::Completed,
        Join::Any if t.open > 0 => Verdict::Pending,
        Join::Any => Verdict::Failed,
        Join::Quorum { n } if t.completed >= n as usize => Verdict::Completed,
        Join::Quorum { n } if t.completed + t.open < n as usize => Verdict::Failed,
        Join::Quorum { .. } => Verdict::Pending,
    }
}

/// Where a child sits in its parent's plan, from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPlace {
    pub parent: TaskId,
    pub position: i32,
    /// The agent it delegates to, or the plan it runs.
    pub label: String,
}

impl ChildPlace {
    /// The place recorded in a child's metadata (`switchyard.parentTaskId`,
    /// `position`, `agent`); `None` for a task that is nobody's child.
    pub fn of(task: &TaskRecord) -> Option<ChildPlace> {
        let hint = task.metadata.as_ref()?.get("switchyard")?;
        Some(ChildPlace {
            parent: task.parent_id?,
            position: hint.get("position")?.as_i64().and_then(|p| i32::try_from(p).ok())?,
            label: hint.get("agent").and_then(Value::as_str).unwrap_or("?").to_owned(),
        })
    }

    /// How messages to clients name the child: `#1 (agent b)`.
    pub fn describe(&self) -> String {
        format!("#{} ({})", self.position, self.label)
    }

    pub(crate) fn tag(&self, child: TaskId) -> Value {
        serde_json::json!({ "childTaskId": child.to_string(), "agent": self.label, "position": self.position })
    }
}

/// A plan task's resolved plan and the attempts its children's delegations get.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub node: Node,
    pub max_attempts: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent(name: &str, skills: &[&str]) -> AgentRecord {
        AgentRecord {
            name: name.into(),
            url: format!("http://{name}"),
            card: Some(json!({"skills": skills.iter().map(|s| json!({"id": s})).collect::<Vec<_>>()})),
            card_fetched_at: None,
            consecutive_failures: 0,
            breaker_open_until: None,
        }
    }

    fn tally(completed: usize, failed: usize, open: usize) -> Tally {
        Tally { completed, failed, open }
    }

    #[test]
    fn joins_decide_as_documented() {
        use Verdict::*;
        assert_eq!(judge(Join::All, false, tally(2, 0, 1)), Pending);
        assert_eq!(judge(Join::All, false, tally(3, 0, 0)), Completed);
        assert_eq!(judge(Join::All, false, tally(1, 1, 1)), Failed, "one failure fails `all` at once");
        assert_eq!(judge(Join::All, true, tally(1, 1, 1)), Pending, "partial: wait for the rest");
        assert_eq!(judge(Join::All, true, tally(2, 1, 0)), Completed);
        assert_eq!(judge(Join::All, true, tally(0, 3, 0)), Failed, "partial still needs one success");
        assert_eq!(judge(Join::Any, false, tally(1, 0, 2)), Completed);
        assert_eq!(judge(Join::Any, false, tally(0, 2, 1)), Pending);
        assert_eq!(judge(Join::Any, false, tally(0, 3, 0)), Failed);
        assert_eq!(judge(Join::Quorum { n: 2 }, false, tally(1, 1, 1)), Pending);
        assert_eq!(judge(Join::Quorum { n: 2 }, false, tally(2, 0, 1)), Completed);
        assert_eq!(judge(Join::Quorum { n: 2 }, false, tally(1, 2, 0)), Failed);
        assert_eq!(judge(Join::Quorum { n: 3 }, false, tally(1, 1, 1)), Failed, "no longer reachable");
    }

    #[test]
    fn plans_resolve_through_nested_plans_and_skills() {
        let agents = [agent("a", &["search"]), agent("b", &["search"]), agent("c", &[])];
        let plans = [
            PlanSpec { name: "research".into(), fanout_skill: Some("search".into()), ..PlanSpec::default() },
            PlanSpec {
                name: "report".into(),
                pipeline: Some(vec!["research".into(), "c".into()]),
                ..PlanSpec::default()
            },
        ];
        let resolver = Resolver { agents: &agents, plans: &plans, limits: PlanLimits::default() };
        let node = resolver.resolve(&plans[1]).expect("resolves");
        let Node::Pipeline { steps, plan } = &node else { panic!("a pipeline: {node:?}") };
        assert_eq!(plan.as_deref(), Some("report"));
        assert!(matches!(&steps[0], Node::Fanout { children, join: Join::All, .. } if children.len() == 2));
        assert_eq!(steps[1], Node::Agent { agent: "c".into() });
        assert_eq!(node.descendants(), 4);
    }

    #[test]
    fn bad_plans_are_refused_with_reasons() {
        let agents = [agent("a", &[])];
        let limits = PlanLimits { width: 2, depth: 2, tasks: 10 };
        let spec = |f: fn(&mut PlanSpec)| {
            let mut s = PlanSpec { name: "p".into(), fanout: Some(vec!["a".into()]), ..PlanSpec::default() };
            f(&mut s);
            s
        };
        let check = |s: PlanSpec, plans: &[PlanSpec]| {
            Resolver { agents: &agents, plans, limits }.resolve(&s).expect_err("refused").to_string()
        };
        assert!(check(spec(|s| s.pipeline = Some(vec!["a".into()])), &[]).contains("exactly one"));
        assert!(check(spec(|s| s.fanout = Some(vec!["a".into(); 3])), &[]).contains("between 1 and 2"));
        assert!(check(spec(|s| s.fanout = Some(vec!["ghost".into()])), &[]).contains("ghost"));
        assert!(check(spec(|s| s.join = Some("most".into())), &[]).contains("unknown join"));
        assert!(check(spec(|s| s.join = Some("quorum".into())), &[]).contains("quorum = N"));
        assert!(check(spec(|s| s.quorum = Some(2)), &[]).contains("needs `join = \"quorum\"`"));
        assert!(
            check(
                spec(|s| {
                    s.allow_partial = true;
                    s.join = Some("any".into());
                }),
                &[]
            )
            .contains("allow_partial")
        );
        let looped = PlanSpec { name: "loop".into(), pipeline: Some(vec!["loop".into()]), ..PlanSpec::default() };
        assert!(check(looped.clone(), std::slice::from_ref(&looped)).contains("deeper than 2"));
        let wide = [PlanSpec { name: "w".into(), fanout: Some(vec!["a".into(), "a".into()]), ..PlanSpec::default() }];
        let tree = PlanSpec { name: "t".into(), fanout: Some(vec!["w".into(), "w".into()]), ..PlanSpec::default() };
        let small = PlanLimits { tasks: 5, ..limits };
        let err = Resolver { agents: &agents, plans: &wide, limits: small }.resolve(&tree).expect_err("too many");
        assert!(err.to_string().contains("6 tasks"), "{err}");
    }

    #[test]
    fn ad_hoc_plans_come_from_metadata() {
        let meta = |v: Value| -> HashMap<String, Value> { [("switchyard".to_owned(), v)].into() };
        let spec = PlanSpec::from_metadata(Some(&meta(json!({"fanout": ["a", "b"], "join": "quorum", "quorum": 1}))))
            .expect("valid")
            .expect("a plan");
        assert_eq!(spec.fanout, Some(vec!["a".into(), "b".into()]));
        assert_eq!(spec.quorum, Some(1));
        assert_eq!(PlanSpec::from_metadata(Some(&meta(json!({"agent": "a"})))), Ok(None));
        assert!(PlanSpec::from_metadata(Some(&meta(json!({"pipeline": "a"})))).is_err());
        assert!(PlanSpec::from_metadata(Some(&meta(json!({"fanout": ["a"], "allowPartial": "yes"})))).is_err());
    }
}
